package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidelog/sidelog/certs"
	"github.com/sidelog/sidelog/webhook"
)

// TestSelfManagedTLS starts the webhook with no Secret and certificates that live seconds, and
// creates pods through the API server all along: through two or more serving-certificate
// renewals and a CA rotation, with the webhook never restarted, no call may fail.
func TestSelfManagedTLS(t *testing.T) {
	_, cfg := controlPlane(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	createNamespace(t, cs, ownNS, false, nil)
	createNamespace(t, cs, "tls", true, nil)

	const (
		configName = "sidelog-tls"
		secretName = "sidelog-webhook-tls"
	)
	addr := freeAddr(t)
	host, port := splitHostPort(t, addr)
	url := "https://" + addr + webhook.Path
	hook := webhook.Configuration(configName, ownNS, admissionregistrationv1.WebhookClientConfig{URL: &url})
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, hook, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ownNS).Get(ctx, secretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Secret exists before the webhook starts: %v", err)
	}

	// Serving certificates renewed every ~4s; the CA replaced ~9s in, and the serving
	// certificate moved to it 3s after the new bundle is published.
	startWebhook(t, cfg, webhook.Options{
		Host: host, Port: port, CertDir: filepath.Join(t.TempDir(), "certs"),
		Certs: &certs.Options{
			SecretName: secretName, WebhookConfigName: configName,
			Hosts:      append(certs.ServiceHosts("sidelog-webhook", ownNS, "cluster.local"), host),
			CALifetime: 15 * time.Second, CARenewBefore: 6 * time.Second,
			ServingLifetime: 6 * time.Second, ServingRenewBefore: 2 * time.Second,
			RolloverDelay: 3 * time.Second, Resync: 2 * time.Second,
		},
	})

	var (
		calls, failures int
		served          = map[string]bool{} // serial numbers of certificates the server presented
		cas             = map[string]bool{} // current CAs seen in the Secret
		sawTwoCAs       bool                // the caBundle held the previous CA with the new one
		servedByNewCA   bool                // a certificate signed by the second CA was served
		firstCA         string
	)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		calls++
		pod, err := cs.CoreV1().Pods("tls").Create(ctx, appPod(fmt.Sprintf("p%d", calls), tail(
			"sidelog.io/upstream", "fluentd.logging:24224")), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			_, err = agentOf(pod)
		}
		if err != nil {
			failures++
			t.Errorf("call %d at %s: %v", calls, time.Now().Format(time.TimeOnly), err)
		}

		leaf := servedCertificate(t, addr)
		served[leaf.SerialNumber.String()] = true
		hc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bundle := pemCertificates(t, hc.Webhooks[0].ClientConfig.CABundle)
		if len(bundle) == 0 {
			t.Fatal("empty caBundle while the webhook is ready")
		}
		current := bundle[0].SerialNumber.String()
		if firstCA == "" {
			firstCA = current
		}
		cas[current] = true
		if len(bundle) > 1 {
			sawTwoCAs = true
		}
		if current != firstCA && leaf.CheckSignatureFrom(bundle[0]) == nil {
			servedByNewCA = true
		}
		if len(served) >= 4 && servedByNewCA && sawTwoCAs {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Error("the webhook accepted TLS 1.1")
	}
	t.Logf("%d admission calls, %d failed; %d serving certificates served, %d CAs", calls, failures, len(served), len(cas))
	if len(served) < 3 {
		t.Errorf("served %d distinct serving certificates, want at least 3 (two renewals)", len(served))
	}
	if len(cas) < 2 || !sawTwoCAs || !servedByNewCA {
		t.Errorf("CA rotation: %d CAs seen, bundle held two = %v, new CA's certificate served = %v; want 2, true, true",
			len(cas), sawTwoCAs, servedByNewCA)
	}
}

// servedCertificate returns the certificate the server at addr presents.
func servedCertificate(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // we only look at it
	if err != nil {
		t.Fatalf("dialling the webhook: %v", err)
	}
	defer conn.Close()
	if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x, want 1.2 or newer", v)
	}
	return conn.ConnectionState().PeerCertificates[0]
}

func pemCertificates(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}
