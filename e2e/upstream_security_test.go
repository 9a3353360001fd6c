package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
	"github.com/sidelog/sidelog/webhook"
)

// TestUpstreamTLSAndSharedKey: a namespace's annotations turn on TLS with its own CA and the
// forward protocol's shared key. A pod created through the real API server comes back with the
// agent mounting just the two Secret keys, and that agent, given the Secrets as a kubelet
// projects them, ships every line to a server that requires both.
//
// The receiver is the project's forwardtest server: the OpenTelemetry fluentforwardreceiver
// speaks neither TLS nor the shared-key handshake.
func TestUpstreamTLSAndSharedKey(t *testing.T) {
	const sharedKey = "s3cret-shared-key"
	serverTLS, caFile, err := forwardtest.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := forwardtest.Start(forwardtest.Options{TLS: serverTLS, SharedKey: sharedKey, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	const ns = "secure"
	createNamespace(t, cs, ns, true, map[string]string{
		injector.AnnotationUpstreamTLS:        "true",
		injector.AnnotationUpstreamServerName: "localhost", // the certificate's name; the pod dials 127.0.0.1
		injector.AnnotationUpstreamCA:         "forward-ca",
		injector.AnnotationUpstreamSharedKey:  "forward-auth/key",
	})
	for _, s := range []*corev1.Secret{
		// A cert-manager-like Secret: the agent must see the CA and nothing else.
		{ObjectMeta: metav1.ObjectMeta{Name: "forward-ca"}, Data: map[string][]byte{
			"ca.crt": caPEM, "tls.key": []byte("not for the agent"),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "forward-auth"}, Data: map[string][]byte{"key": []byte(sharedKey)}},
	} {
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wo := env.WebhookInstallOptions
	_, metricsPort := splitHostPort(t, freeAddr(t))
	startWebhook(t, cfg, webhook.Options{
		Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		PolicyFile: writePolicy(t, fmt.Sprintf("metricsPort: %d\n", metricsPort)),
	})

	logDir := t.TempDir()
	pod := logPod(logDir, map[string]string{
		injector.AnnotationTail + ".app": logDir + "/*.log",
		injector.AnnotationUpstream:      srv.Addr(),
	})
	pod.Namespace, pod.UID = ns, ""
	var created *corev1.Pod
	eventually(t, 60*time.Second, "the API server to call the webhook", func() error {
		created, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if _, err := agentOf(created); err != nil {
			// Created before the webhook was called: try again under another name.
			pod.Name += "x"
			return err
		}
		return nil
	})

	// Each Secret volume projects the one key the agent reads.
	volumeDirs := map[string]string{"logs": logDir}
	for _, want := range []struct{ volume, secret, key string }{
		{injector.UpstreamCAVolume, "forward-ca", "ca.crt"},
		{injector.SharedKeyVolume, "forward-auth", "key"},
	} {
		i := slices.IndexFunc(created.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == want.volume })
		if i < 0 {
			t.Fatalf("no volume %s in the injected pod: %+v", want.volume, created.Spec.Volumes)
		}
		sv := created.Spec.Volumes[i].Secret
		if sv == nil || sv.SecretName != want.secret || len(sv.Items) != 1 || sv.Items[0].Key != want.key {
			t.Fatalf("volume %s = %+v, want Secret %s with the single key %s", want.volume, created.Spec.Volumes[i], want.secret, want.key)
		}
		volumeDirs[want.volume] = projectSecret(t, cs, ns, sv)
	}

	agent := runInjectedAgent(t, created, volumeDirs)
	lines := numbered("secure", 0, 500)
	appendFile(t, filepath.Join(logDir, "app.log"), lines...)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := srv.Wait(wctx, int64(len(lines))); err != nil {
		t.Fatalf("%v: %d of %d records arrived\n%s", err, srv.Count(), len(lines), agent.output)
	}
	if err := agent.stop(t); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, agent.output)
	}
	var got []string
	for _, e := range srv.Events() {
		got = append(got, fmt.Sprint(e.Record["log"]))
	}
	if len(got) != len(lines) || !slices.Equal(got, lines) {
		t.Errorf("received %d records, want the %d written in order", len(got), len(lines))
	}
	if n := srv.AuthFailures(); n != 0 {
		t.Errorf("%d failed shared-key handshakes", n)
	}
}

// projectSecret writes the keys a Secret volume selects into a new directory, as a kubelet does.
func projectSecret(t *testing.T, cs kubernetes.Interface, ns string, v *corev1.SecretVolumeSource) string {
	t.Helper()
	s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), v.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	items := v.Items
	if len(items) == 0 {
		for k := range s.Data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		data, ok := s.Data[it.Key]
		if !ok {
			t.Fatalf("Secret %s has no key %s: the kubelet would not start the pod", v.SecretName, it.Key)
		}
		if err := os.WriteFile(filepath.Join(dir, it.Path), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
