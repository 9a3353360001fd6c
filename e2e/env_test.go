package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sidelog/sidelog/webhook"
)

// ownNS is the webhook's namespace in every test.
const ownNS = "sidelog-system"

func init() {
	// controller-runtime complains on stderr when no logger is set; the tests' logs go to
	// SIDELOG_E2E_LOG when it is set, nowhere otherwise.
	var w io.Writer = io.Discard
	if path := os.Getenv("SIDELOG_E2E_LOG"); path != "" {
		if f, err := os.Create(path); err == nil {
			w = f
		}
	}
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.Level(-1)})))
}

// controlPlane starts kube-apiserver and etcd with the given webhook configurations installed
// (envtest points them at a local port with its own CA: see env.WebhookInstallOptions), and
// stops them when the test ends.
func controlPlane(tb testing.TB, hooks ...*admissionregistrationv1.MutatingWebhookConfiguration) (*envtest.Environment, *rest.Config) {
	tb.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		tb.Skip(`KUBEBUILDER_ASSETS is unset: these tests need kube-apiserver and etcd; run them with ` +
			`KUBEBUILDER_ASSETS="$(../../shared/k8s-tools/install.sh)" go test ./...`)
	}
	env := &envtest.Environment{
		WebhookInstallOptions: envtest.WebhookInstallOptions{MutatingWebhooks: hooks},
	}
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("starting the control plane: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stopping the control plane: %v", err)
		}
	})
	// Enough for the benchmarks' concurrent creates.
	cfg.QPS, cfg.Burst = 1000, 2000
	return env, cfg
}

// startWebhook runs the webhook (webhook.Run, as `sidelog webhook` does) until the test ends,
// and waits until /readyz says it is ready.
func startWebhook(tb testing.TB, cfg *rest.Config, o webhook.Options) (metricsURL string) {
	tb.Helper()
	o.HealthAddr = freeAddr(tb)
	o.MetricsAddr = freeAddr(tb)
	if o.Namespace == "" {
		o.Namespace = ownNS
	}
	o.Log = ctrllog.Log.WithName("webhook")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = webhook.Run(ctx, cfg, o); close(done) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
			if runErr != nil {
				tb.Errorf("webhook: %v", runErr)
			}
		case <-time.After(70 * time.Second):
			tb.Errorf("webhook did not stop")
		}
	})

	ready := "http://" + o.HealthAddr + "/readyz"
	eventually(tb, 60*time.Second, "webhook ready", func() error {
		select {
		case <-done:
			tb.Fatalf("webhook stopped: %v", runErr)
		default:
		}
		resp, err := http.Get(ready)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	})
	return "http://" + o.MetricsAddr + "/metrics"
}

// freeAddr returns a local address no one listens on.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		// A port closed here is free for the kernel to give again: two calls of one test (the
		// webhook's port and its metrics') once got the same one.
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// handedOut are the addresses freeAddr gave in this test process.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// eventually polls check until it returns nil, failing the test after timeout with the last
// error. Deadlines are generous: the machine may be busy.
func eventually(tb testing.TB, timeout time.Duration, what string, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createNamespace creates a namespace, labelled for injection if optIn.
func createNamespace(tb testing.TB, cs kubernetes.Interface, name string, optIn bool, annotations map[string]string) {
	tb.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, Labels: map[string]string{}}}
	if optIn {
		ns.Labels[webhook.NamespaceLabel] = webhook.NamespaceLabelEnabled
	}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("creating namespace %s: %v", name, err)
	}
}

// writePolicy writes a policy file for the webhook's --policy.
func writePolicy(tb testing.TB, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

var errNoAgent = errors.New("no agent")

func splitHostPort(tb testing.TB, addr string) (string, int) {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	return host, p
}
