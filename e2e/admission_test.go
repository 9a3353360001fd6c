package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/webhook"
)

// The cluster policy of the admission tests: a default upstream, pods may override only the
// upstream and multiline, and logs on no volume get an emptyDir (with a warning).
const admissionPolicy = `
upstream: [fluentd.cluster:24224]
allowPodOverride: [upstream, multiline]
missingVolume: emptyDir
`

// teamDefaults are the annotations of the "team" namespace.
var teamDefaults = map[string]string{
	injector.AnnotationUpstream: "fluent-bit.team:24224",
	injector.AnnotationParser:   "json",
}

// appPod has one container "app" whose logs are on emptyDir "logs" at /var/log/app.
func appPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: "example.com/web:1",
				VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: "/var/log/app"}},
			}},
			Volumes: []corev1.Volume{{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

func tail(more ...string) map[string]string {
	ann := map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"}
	for i := 0; i+1 < len(more); i += 2 {
		ann[more[i]] = more[i+1]
	}
	return ann
}

// agentOf returns the agent's configuration in pod, or errNoAgent.
func agentOf(pod *corev1.Pod) (*config.Config, error) {
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name != injector.AgentContainer {
			continue
		}
		for _, e := range c.Env {
			if e.Name == config.Env {
				var cfg config.Config
				if err := json.Unmarshal([]byte(e.Value), &cfg); err != nil {
					return nil, fmt.Errorf("agent config: %w", err)
				}
				return &cfg, nil
			}
		}
		return nil, fmt.Errorf("agent container has no %s", config.Env)
	}
	return nil, errNoAgent
}

// warnings records the warnings the API server sends, as kubectl prints them.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

func TestAdmission(t *testing.T) {
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	wo := env.WebhookInstallOptions

	cfgW := rest.CopyConfig(cfg)
	warn := &warnings{}
	cfgW.WarningHandler = warn
	cs := kubernetes.NewForConfigOrDie(cfgW)

	for _, ns := range []struct {
		name  string
		optIn bool
		ann   map[string]string
	}{
		{ownNS, true, nil}, // labelled, to show that the webhook's own namespace is excluded anyway
		{"team", true, teamDefaults},
		{"plain", false, nil},
	} {
		createNamespace(t, cs, ns.name, ns.optIn, ns.ann)
	}
	// kube-system exists; label it too, to show it is excluded anyway.
	ks, err := cs.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ks.Labels[webhook.NamespaceLabel] = webhook.NamespaceLabelEnabled
	if _, err := cs.CoreV1().Namespaces().Update(context.Background(), ks, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	metricsURL := startWebhook(t, cfg, webhook.Options{
		Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		PolicyFile: writePolicy(t, admissionPolicy),
	})

	ctx := context.Background()
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	eventually(t, 60*time.Second, "the API server to call the webhook", func() error {
		pod, err := cs.CoreV1().Pods("team").Create(ctx, appPod("probe", tail()), dryRun)
		if err != nil {
			return err
		}
		_, err = agentOf(pod)
		return err
	})
	warn.take()

	t.Run("labelled namespace: annotated pod is injected", func(t *testing.T) {
		created, err := cs.CoreV1().Pods("team").Create(ctx, appPod("injected", tail()), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stored, err := cs.CoreV1().Pods("team").Get(ctx, "injected", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, pod := range []*corev1.Pod{created, stored} {
			if _, err := agentOf(pod); err != nil {
				t.Errorf("pod %s: %v", pod.ResourceVersion, err)
			}
			if _, ok := pod.Annotations[injector.AnnotationStatus]; !ok {
				t.Errorf("pod has no %s annotation", injector.AnnotationStatus)
			}
		}
	})

	t.Run("untouched namespaces", func(t *testing.T) {
		for _, ns := range []string{"plain", "kube-system", ownNS} {
			pod, err := cs.CoreV1().Pods(ns).Create(ctx, appPod("untouched", tail()), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("namespace %s: %v", ns, err)
			}
			if _, err := agentOf(pod); err != errNoAgent {
				t.Errorf("namespace %s: pod changed (%v)", ns, err)
			}
			if _, ok := pod.Annotations[injector.AnnotationStatus]; ok {
				t.Errorf("namespace %s: pod has %s", ns, injector.AnnotationStatus)
			}
		}
	})

	t.Run("bad annotation: create fails with the named message", func(t *testing.T) {
		_, err := cs.CoreV1().Pods("team").Create(ctx,
			appPod("bad", map[string]string{injector.AnnotationTail + ".app": "var/log/app/*.log"}), metav1.CreateOptions{})
		want := `admission webhook "` + webhook.WebhookName + `" denied the request: sidelog.io/tail.app: "var/log/app/*.log" is not absolute`
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want Forbidden containing %q", err, want)
		}
		if _, err := cs.CoreV1().Pods("team").Get(ctx, "bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("refused pod exists: %v", err)
		}
	})

	t.Run("warnings reach the client", func(t *testing.T) {
		warn.take()
		pod := appPod("warned", map[string]string{injector.AnnotationTail + ".app": "/srv/logs/*.log"})
		if _, err := cs.CoreV1().Pods("team").Create(ctx, pod, dryRun); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(warn.take(), "\n")
		if !strings.Contains(got, "/srv/logs/*.log was on no volume") || !strings.Contains(got, "emptyDir") {
			t.Errorf("warnings = %q, want the added emptyDir explained", got)
		}
	})

	t.Run("kubectl prints the warnings", func(t *testing.T) {
		kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
		if _, err := os.Stat(kubectl); err != nil {
			t.Skipf("no kubectl in KUBEBUILDER_ASSETS: %v", err)
		}
		user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := user.KubeConfig()
		if err != nil {
			t.Fatal(err)
		}
		kcPath := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
			t.Fatal(err)
		}
		manifest, err := json.Marshal(withKind(appPod("kubectl", map[string]string{injector.AnnotationTail + ".app": "/srv/logs/*.log"})))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(kubectl, "--kubeconfig", kcPath, "-n", "team", "create", "--dry-run=server", "-o", "name", "-f", "-")
		cmd.Stdin = bytes.NewReader(manifest)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl: %v: %s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "Warning: sidelog.io/tail.app: /srv/logs/*.log was on no volume") {
			t.Errorf("kubectl stderr = %q, want the webhook's warning", stderr.String())
		}
	})

	t.Run("dry-run create changes nothing", func(t *testing.T) {
		pod, err := cs.CoreV1().Pods("team").Create(ctx, appPod("dry", tail()), dryRun)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agentOf(pod); err != nil {
			t.Errorf("dry-run answer: %v, want the injected pod", err)
		}
		if _, err := cs.CoreV1().Pods("team").Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run pod stored: %v", err)
		}
	})

	t.Run("namespace defaults and pod overrides", func(t *testing.T) {
		tests := []struct {
			name         string
			ann          map[string]string
			wantUpstream string
			wantParser   string
			wantDenied   string
		}{
			{"namespace defaults apply", tail(), "fluent-bit.team:24224", "json", ""},
			{"pod's upstream wins: the policy allows it", tail(injector.AnnotationUpstream, "fluentd.pod:24224"), "fluentd.pod:24224", "json", ""},
			{"pod's parser refused: the policy does not allow it", tail(injector.AnnotationParser, "none"), "", "",
				injector.AnnotationParser},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				pod, err := cs.CoreV1().Pods("team").Create(ctx, appPod("defaults-"+strconv.Itoa(i), tt.ann), dryRun)
				if tt.wantDenied != "" {
					if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tt.wantDenied) {
						t.Fatalf("error = %v, want Forbidden naming %s", err, tt.wantDenied)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				cfg, err := agentOf(pod)
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Upstream.Servers; len(got) == 0 || got[0] != tt.wantUpstream {
					t.Errorf("upstream = %v, want %s", got, tt.wantUpstream)
				}
				if got := cfg.Inputs[0].Parser; got != tt.wantParser {
					t.Errorf("parser = %q, want %q", got, tt.wantParser)
				}
			})
		}
	})

	t.Run("metrics count outcomes", func(t *testing.T) {
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, outcome := range []string{webhook.OutcomeInjected, webhook.OutcomeRefused} {
			v, ok := metricValue(string(body), `sidelog_webhook_admissions_total{outcome="`+outcome+`"}`)
			if !ok || v < 1 {
				t.Errorf("admissions{outcome=%q} = %v (found %v), want at least 1", outcome, v, ok)
			}
		}
		if v, ok := metricValue(string(body), `sidelog_webhook_admission_duration_seconds_count{outcome="injected"}`); !ok || v < 1 {
			t.Errorf("latency histogram count = %v (found %v), want at least 1", v, ok)
		}
	})
}

// metricValue finds the sample named series (with its labels) in a Prometheus text exposition.
func metricValue(exposition, series string) (float64, bool) {
	for line := range strings.Lines(exposition) {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

func withKind(p *corev1.Pod) *corev1.Pod {
	p.APIVersion, p.Kind = "v1", "Pod"
	return p
}

// TestReinvocation: a webhook that runs after sidelog's and opts a pod in (a policy engine
// turning sidelog.io/inject to "true") still gets the pod injected, because the API server calls
// sidelog again on the changed pod (reinvocationPolicy IfNeeded); with Never it would not be.
func TestReinvocation(t *testing.T) {
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	wo := env.WebhookInstallOptions
	cs := kubernetes.NewForConfigOrDie(cfg)
	createNamespace(t, cs, "team", true, nil)
	startWebhook(t, cfg, webhook.Options{
		Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		PolicyFile: writePolicy(t, admissionPolicy),
	})

	// The opt-in webhook, served with envtest's certificate on a port of its own. Its
	// configuration's name sorts after sidelog's, so the API server calls it second.
	addr := freeAddr(t)
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second, Handler: &admission.Webhook{
		Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
			var pod corev1.Pod
			if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
				return admission.Errored(http.StatusBadRequest, err)
			}
			if pod.Annotations[injector.AnnotationInject] == "true" {
				return admission.Allowed("")
			}
			pod.Annotations[injector.AnnotationInject] = "true"
			raw, err := json.Marshal(&pod)
			if err != nil {
				return admission.Errored(http.StatusInternalServerError, err)
			}
			return admission.PatchResponseFromRaw(req.Object.Raw, raw)
		}),
	}}
	go func() {
		_ = srv.ListenAndServeTLS(filepath.Join(wo.LocalServingCertDir, "tls.crt"), filepath.Join(wo.LocalServingCertDir, "tls.key"))
	}()
	t.Cleanup(func() { srv.Close() })
	optIn := webhook.Configuration("zz-opt-in", ownNS, admissionregistrationv1.WebhookClientConfig{})
	optIn.Webhooks = optIn.Webhooks[:1] // the pod webhook alone
	w := &optIn.Webhooks[0]
	w.Name = "opt-in.example.com"
	url := "https://" + addr + "/opt-in"
	w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: wo.LocalServingCAData}
	never := admissionregistrationv1.NeverReinvocationPolicy
	w.ReinvocationPolicy = &never
	ctx := context.Background()
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, optIn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Opted out when sidelog first sees it; opted in by the webhook after it.
	pod := appPod("opted-in-later", tail(injector.AnnotationInject, "false"))
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	eventually(t, 60*time.Second, "the API server to call both webhooks and inject the pod", func() error {
		created, err := cs.CoreV1().Pods("team").Create(ctx, pod, dryRun)
		if err != nil {
			return err
		}
		if created.Annotations[injector.AnnotationInject] != "true" {
			return fmt.Errorf("the opt-in webhook was not called yet: annotations %v", created.Annotations)
		}
		_, err = agentOf(created)
		return err
	})
}
