package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/webhook"
)

// TestWebhookDrains stops a webhook as the kubelet does in a rollout (its context ends, as at
// SIGTERM): /readyz fails at once, so that the endpoints drop the replica, while it goes on
// injecting pods through the API server for its shutdown delay; then it stops.
func TestWebhookDrains(t *testing.T) {
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	wo := env.WebhookInstallOptions
	cs := kubernetes.NewForConfigOrDie(cfg)
	createNamespace(t, cs, "team", true, nil)

	const delay = 3 * time.Second
	o := webhook.Options{
		Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		PolicyFile: writePolicy(t, admissionPolicy), Namespace: ownNS,
		HealthAddr: freeAddr(t), MetricsAddr: "0", ShutdownDelay: delay,
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- webhook.Run(ctx, cfg, o) }()
	ready := "http://" + o.HealthAddr + "/readyz"
	eventually(t, 60*time.Second, "the webhook ready", func() error {
		if status, body := get(ready); status != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", status, body)
		}
		return nil
	})
	inject := func() error {
		p, err := cs.CoreV1().Pods("team").Create(context.Background(), appPod("drain", tail()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if _, err := agentOf(p); err != nil {
			return fmt.Errorf("%v: %s", err, p.Annotations[injector.AnnotationStatus])
		}
		return nil
	}
	if err := inject(); err != nil {
		t.Fatal(err)
	}

	stop()
	stopped := time.Now()
	// The stop is seen by a goroutine of Run's: on a busy machine it may take a moment, but
	// it must be well within the shutdown delay, while the server still answers.
	for status, _ := get(ready); status == http.StatusOK; status, _ = get(ready) {
		if time.Since(stopped) > delay/2 {
			t.Fatalf("/readyz still ok %s after the stop began", time.Since(stopped).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for time.Since(stopped) < delay-time.Second {
		if err := inject(); err != nil {
			t.Fatalf("%s into the shutdown delay: %v", time.Since(stopped).Round(time.Millisecond), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("webhook.Run: %v", err)
		}
		if d := time.Since(stopped); d < delay {
			t.Errorf("stopped %s after the stop began, before its shutdown delay of %s", d, delay)
		}
	case <-time.After(time.Minute):
		t.Fatal("the webhook did not stop")
	}
}
