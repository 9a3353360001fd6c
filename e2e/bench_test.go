package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidelog/sidelog/webhook"
)

// BenchmarkDryRunCreate creates pods with dry-run through a real kube-apiserver that calls the
// webhook, from 1, 10 and 100 concurrent clients, and reports pods/s and the latency
// percentiles of one create. API server, etcd, webhook and clients share the machine.
//
//	KUBEBUILDER_ASSETS="$(../../shared/k8s-tools/install.sh)" go test -run '^$' -bench DryRunCreate -benchtime 3000x ./
func BenchmarkDryRunCreate(b *testing.B) {
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(b, hook)
	wo := env.WebhookInstallOptions
	cs := kubernetes.NewForConfigOrDie(cfg)
	createNamespace(b, cs, ownNS, false, nil)
	createNamespace(b, cs, "bench", true, teamDefaults)
	startWebhook(b, cfg, webhook.Options{Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir})

	ctx := context.Background()
	pod := appPod("bench", tail())
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	create := func() error {
		got, err := cs.CoreV1().Pods("bench").Create(ctx, pod, dryRun)
		if err != nil {
			return err
		}
		_, err = agentOf(got)
		return err
	}
	eventually(b, 60*time.Second, "the API server to call the webhook", create)

	for _, concurrency := range []int{1, 10, 100} {
		b.Run("concurrency="+strconv.Itoa(concurrency), func(b *testing.B) {
			latencies := make([]time.Duration, b.N)
			var next atomic.Int64
			var mu sync.Mutex
			var firstErr error
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range concurrency {
				wg.Go(func() {
					for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
						t0 := time.Now()
						err := create()
						latencies[i] = time.Since(t0)
						if err != nil {
							mu.Lock()
							if firstErr == nil {
								firstErr = fmt.Errorf("create %d: %w", i, err)
							}
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if firstErr != nil {
				b.Fatal(firstErr)
			}
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pods/s")
		})
	}
}
