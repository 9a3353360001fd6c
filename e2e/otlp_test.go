package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
	"github.com/sidelog/sidelog/webhook"
)

// otlpRecord is one log record as the Collector's otlpreceiver decoded it.
type otlpRecord struct {
	Body      any
	Resource  map[string]any
	Attrs     map[string]any
	Scope     string
	Observed  time.Time
	OrgHeader string // the request's X-Scope-OrgID, from the receiver's client metadata
}

// otlpReceiver is the OpenTelemetry Collector's otlpreceiver (HTTP only) in this process,
// feeding a tally and, when keep is set, keeping every record. It can go down and come back on
// the same address.
type otlpReceiver struct {
	Addr  string
	URL   string // http(s)://Addr
	tally *tally
	keep  bool

	certPEM, keyPEM string // TLS when set

	mu      sync.Mutex
	records []otlpRecord
	rcv     receiver.Logs // nil while down
}

func startOTLPReceiver(tb testing.TB, keep bool, serverTLS *forwardtestTLS) *otlpReceiver {
	tb.Helper()
	r := &otlpReceiver{Addr: freeAddr(tb), tally: &tally{}, keep: keep}
	r.URL = "http://" + r.Addr
	if serverTLS != nil {
		r.certPEM, r.keyPEM = serverTLS.certPEM, serverTLS.keyPEM
		r.URL = "https://" + r.Addr
	}
	r.up(tb)
	tb.Cleanup(func() { r.down(tb) })
	return r
}

func (r *otlpReceiver) up(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rcv != nil {
		return
	}
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	h := cfg.Protocols.HTTP.GetOrInsertDefault()
	h.ServerConfig.NetAddr.Endpoint = r.Addr
	h.ServerConfig.IncludeMetadata = true
	if r.certPEM != "" {
		h.ServerConfig.TLS = configoptional.Some(configtls.ServerConfig{Config: configtls.Config{
			CertPem: configopaque.String(r.certPEM), KeyPem: configopaque.String(r.keyPEM)}})
	}
	sink, err := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
		org := strings.Join(client.FromContext(ctx).Metadata.Get("X-Scope-OrgID"), ",")
		rls := ld.ResourceLogs()
		for i := range rls.Len() {
			res := rls.At(i).Resource().Attributes().AsRaw()
			sls := rls.At(i).ScopeLogs()
			for j := range sls.Len() {
				lrs := sls.At(j).LogRecords()
				for k := range lrs.Len() {
					lr := lrs.At(k)
					r.tally.add(lr.Body().AsString())
					if r.keep {
						r.mu.Lock()
						r.records = append(r.records, otlpRecord{Body: lr.Body().AsRaw(), Resource: res, Attrs: lr.Attributes().AsRaw(),
							Scope: sls.At(j).Scope().Name(), Observed: lr.ObservedTimestamp().AsTime(), OrgHeader: org})
						r.mu.Unlock()
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	eventually(tb, 30*time.Second, "the OTLP receiver listening on "+r.Addr, func() error {
		rcv, err := f.CreateLogs(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, sink)
		if err != nil {
			return err
		}
		if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			return err
		}
		r.rcv = rcv
		return nil
	})
}

func (r *otlpReceiver) down(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rcv == nil {
		return
	}
	if err := r.rcv.Shutdown(context.Background()); err != nil {
		tb.Errorf("stopping the OTLP receiver: %v", err)
	}
	r.rcv = nil
}

func (r *otlpReceiver) kept() []otlpRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]otlpRecord(nil), r.records...)
}

// forwardtestTLS is a server certificate for "localhost" and the CA that signed it, as PEM.
type forwardtestTLS struct {
	certPEM, keyPEM string
	caPEM           []byte
}

func generateTLS(tb testing.TB) *forwardtestTLS {
	tb.Helper()
	conf, caFile, err := forwardtest.GenerateTLS(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		tb.Fatal(err)
	}
	cert := conf.Certificates[0]
	key, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		tb.Fatal(err)
	}
	return &forwardtestTLS{
		certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})),
		keyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key})),
		caPEM:   ca,
	}
}

// otlpPod injects a pod whose app logs to dir, shipping dir/*.log over OTLP to upstream, with
// more annotations and policy fields.
func otlpPod(tb testing.TB, dir, upstream string, more map[string]string, policy string) *corev1.Pod {
	tb.Helper()
	ann := map[string]string{
		injector.AnnotationTail + ".app":    dir + "/*.log",
		injector.AnnotationUpstreamProtocol: "otlp",
		injector.AnnotationUpstream:         upstream,
	}
	for k, v := range more {
		ann[k] = v
	}
	return injectWith(tb, logPod(dir, ann), policy)
}

// secretDir writes a Secret's keys into a new directory as the kubelet projects them: each key a
// symbolic link into ..data, itself a link to a timestamped directory.
func secretDir(tb testing.TB, data map[string][]byte) string {
	tb.Helper()
	dir := tb.TempDir()
	ts := filepath.Join(dir, "..2026_11_30_10_00_00.000000001")
	if err := os.Mkdir(ts, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		tb.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(ts, k), v, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// TestAgentOTLPToTheCollector: the injected agent ships to the OpenTelemetry Collector's
// otlpreceiver, over plain HTTP, and over HTTPS with the CA and headers from Secrets and gzip:
// every line once and in order, the JSON line as a map, the Kubernetes resource attributes,
// the scope and log.file.path, and a drain on SIGTERM.
func TestAgentOTLPToTheCollector(t *testing.T) {
	for _, tt := range []struct {
		name   string
		secure bool
	}{{"http", false}, {"https CA headers gzip", true}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var recv *otlpReceiver
			more := map[string]string{injector.AnnotationParser + ".app": "json"}
			volumes := map[string]string{"logs": dir}
			if tt.secure {
				certs := generateTLS(t)
				recv = startOTLPReceiver(t, true, certs)
				more[injector.AnnotationUpstreamCA] = "otel-ca"
				more[injector.AnnotationUpstreamServerName] = "localhost" // the certificate's name; the agent dials 127.0.0.1
				more[injector.AnnotationUpstreamHeaders] = "otel-tenant"
				more[injector.AnnotationUpstreamCompression] = "gzip"
				volumes[injector.UpstreamCAVolume] = secretDir(t, map[string][]byte{"ca.crt": certs.caPEM})
				volumes[injector.UpstreamHeadersVolume] = secretDir(t, map[string][]byte{"X-Scope-OrgID": []byte("tenant-a\n")})
			} else {
				recv = startOTLPReceiver(t, true, nil)
			}
			pod := otlpPod(t, dir, recv.URL, more, "")
			agent := runInjectedAgent(t, pod, volumes)

			want := numbered("otlp", 0, 3000)
			want = append(want, `{"user":"ann","action":"refund","amount":12.5,"items":[1,2]}`)
			appendFile(t, filepath.Join(dir, "app.log"), want...)
			eventually(t, 2*time.Minute, fmt.Sprintf("%d records at the receiver", len(want)), func() error {
				if n := len(recv.kept()); n < len(want) {
					return fmt.Errorf("%d records", n)
				}
				return nil
			})
			if tt.secure {
				// gzip: what went on the wire is a fraction of the log.
				sent := scrape(t, agentMetricsURL(t, pod), "sidelog_otlp_bytes_sent_total")
				if raw := float64(len(strings.Join(want, "\n"))); sent <= 0 || sent > raw/2 {
					t.Errorf("sent %.0f bytes for %.0f bytes of log: not compressed", sent, raw)
				}
			}
			if err := agent.stop(t); err != nil {
				t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
			}

			got := recv.kept()
			var bodies []string
			for _, r := range got[:len(got)-1] {
				bodies = append(bodies, fmt.Sprint(r.Body))
			}
			if diff := cmp.Diff(want[:len(want)-1], bodies); diff != "" {
				t.Errorf("records, lost (-) or duplicated (+):\n%s", diff)
			}
			wantJSON := map[string]any{"user": "ann", "action": "refund", "amount": 12.5, "items": []any{int64(1), int64(2)}}
			if diff := cmp.Diff(wantJSON, got[len(got)-1].Body); diff != "" {
				t.Errorf("the JSON line's body (-want +got):\n%s", diff)
			}
			wantRes := map[string]any{
				"k8s.namespace.name": "shop", "k8s.pod.name": "checkout-5d8f7-abcde",
				"k8s.pod.uid": "6f1c9c1e-8d0e-4c1e-9a53-7b0d3c1f2a44", "k8s.container.name": "app",
				"k8s.node.name": "virtual-kubelet-eci", "k8s.pod.label.app": "checkout", "k8s.pod.label.tier": "web",
				"k8s.pod.label." + injector.LabelInjected: "true",
			}
			wantOrg := ""
			if tt.secure {
				wantOrg = "tenant-a"
			}
			for i, r := range got {
				if diff := cmp.Diff(wantRes, r.Resource); diff != "" {
					t.Fatalf("record %d resource (-want +got):\n%s", i, diff)
				}
				if diff := cmp.Diff(map[string]any{"log.file.path": filepath.Join(dir, "app.log")}, r.Attrs); diff != "" {
					t.Fatalf("record %d attributes (-want +got):\n%s", i, diff)
				}
				if r.Scope != "sidelog" || r.Observed.IsZero() || time.Since(r.Observed) > 10*time.Minute {
					t.Fatalf("record %d: scope %q, observed %v", i, r.Scope, r.Observed)
				}
				if r.OrgHeader != wantOrg {
					t.Fatalf("record %d: X-Scope-OrgID %q, want %q", i, r.OrgHeader, wantOrg)
				}
			}
		})
	}
}

// faultProxy stands in front of an otlpreceiver: answer decides, per request (n counts from 1),
// whether to answer itself before (returning true) or to pass the request on; after is called
// with the receiver's answer, and may replace the body of a 2xx.
type faultProxy struct {
	*httptest.Server
	requests atomic.Int64
}

func startFaultProxy(tb testing.TB, target *otlpReceiver, before func(n int64, w http.ResponseWriter) bool, after func(n int64) []byte) *faultProxy {
	tb.Helper()
	u, err := url.Parse(target.URL)
	if err != nil {
		tb.Fatal(err)
	}
	p := &faultProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.requests.Add(1)
		if before != nil && before(n, w) {
			return
		}
		var body []byte
		if after != nil {
			body = after(n)
		}
		if body == nil {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code/100 != 2 {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(body)
	}))
	tb.Cleanup(p.Close)
	return p
}

// TestReliabilityOTLPReceiverDown stops the otlpreceiver while the app writes 5000 lines a second
// and starts it again: every line arrives, memory stays bounded.
func TestReliabilityOTLPReceiverDown(t *testing.T) {
	const rate = 5000
	before, down, after := span(10*time.Second, 2*time.Second), span(60*time.Second, 4*time.Second), span(10*time.Second, 2*time.Second)
	dir, state := t.TempDir(), t.TempDir()
	recv := startOTLPReceiver(t, false, nil)
	pod := otlpPod(t, dir, recv.URL, nil, "")
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() { lg.run(rate, before+down+after, 0, nil) })
	time.Sleep(before)
	recv.down(t)
	downAt := lg.written()
	time.Sleep(down)
	recv.up(t)
	upAt, back := lg.written(), time.Now()
	recv.tally.waitAll(t, upAt, 3*time.Minute)
	caughtUp := time.Since(back)
	wg.Wait()
	written := lg.written()
	recv.tally.waitAll(t, written, 3*time.Minute)
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	s := checkNothingLost(t, recv.tally, written)
	if s.Duplicates > 0 {
		t.Errorf("%d duplicates: a refused connection delivered nothing, so nothing should come twice", s.Duplicates)
	}
	peak := agent.peakRSS()
	checkMemory(t, peak)
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: peak, Elapsed: time.Since(start),
		Notes: fmt.Sprintf("OTLP; otlpreceiver down %s at %d lines/s (%.0f MB written meanwhile); the backlog delivered %s after it came back",
			down, rate, float64((upAt-downAt)*lineBytes)/1e6, caughtUp.Round(100*time.Millisecond)),
	})
}

// TestReliabilityOTLPRetryAfter answers every 4th request with 503 and Retry-After: 1 in front
// of a real otlpreceiver while the app writes: the agent waits and sends the batch again, and
// every line arrives once.
func TestReliabilityOTLPRetryAfter(t *testing.T) {
	const rate = 5000
	d := span(30*time.Second, 5*time.Second)
	dir, state := t.TempDir(), t.TempDir()
	recv := startOTLPReceiver(t, false, nil)
	var busy atomic.Int64
	proxy := startFaultProxy(t, recv, func(n int64, w http.ResponseWriter) bool {
		if n%4 != 0 {
			return false
		}
		busy.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}, nil)
	pod := otlpPod(t, dir, proxy.URL, nil, "")
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()
	lg.run(rate, d, 0, nil)
	written := lg.written()
	recv.tally.waitAll(t, written, 3*time.Minute)
	retries := scrape(t, agentMetricsURL(t, pod), "sidelog_otlp_retries_total")
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	s := checkNothingLost(t, recv.tally, written)
	if s.Duplicates > 0 {
		t.Errorf("%d duplicates: a 503 delivered nothing, so nothing should come twice", s.Duplicates)
	}
	if retries < float64(busy.Load())-1 || busy.Load() == 0 {
		t.Errorf("%d requests answered 503, the agent retried %.0f", busy.Load(), retries)
	}
	checkMemory(t, agent.peakRSS())
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: agent.peakRSS(), Elapsed: time.Since(start),
		Notes: fmt.Sprintf("OTLP; %d of %d requests answered 503 with Retry-After: 1, each retried", busy.Load(), proxy.requests.Load()),
	})
}

// TestReliabilityOTLPPartialSuccess: every 3rd answer of the otlpreceiver says one record was
// rejected. The agent counts them as dropped, with the reason, and sends nothing again.
func TestReliabilityOTLPPartialSuccess(t *testing.T) {
	const rate = 5000
	d := span(20*time.Second, 4*time.Second)
	dir, state := t.TempDir(), t.TempDir()
	recv := startOTLPReceiver(t, false, nil)
	var partial atomic.Int64
	proxy := startFaultProxy(t, recv, nil, func(n int64) []byte {
		if n%3 != 0 {
			return nil
		}
		partial.Add(1)
		resp := plogotlp.NewExportResponse()
		resp.PartialSuccess().SetRejectedLogRecords(1)
		resp.PartialSuccess().SetErrorMessage("one record too old")
		b, err := resp.MarshalProto()
		if err != nil {
			t.Error(err)
		}
		return b
	})
	pod := otlpPod(t, dir, proxy.URL, nil, "")
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()
	lg.run(rate, d, 0, nil)
	written := lg.written()
	recv.tally.waitAll(t, written, 3*time.Minute)
	dropped := scrape(t, agentMetricsURL(t, pod), "sidelog_dropped_total", "reason", "otlp_partial_success")
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	s := checkNothingLost(t, recv.tally, written)
	if s.Duplicates > 0 {
		t.Errorf("%d duplicates: a partial success is not retried", s.Duplicates)
	}
	if dropped != float64(partial.Load()) || dropped == 0 {
		t.Errorf("sidelog_dropped_total{reason=otlp_partial_success} = %.0f, want the %d rejected", dropped, partial.Load())
	}
	if logs := logLines(agent.output.String(), "the upstream rejected some records"); len(logs) == 0 || logs[0]["message"] != "one record too old" {
		t.Errorf("agent log of the rejection: %v, want the server's message", logs)
	}
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: agent.peakRSS(), Elapsed: time.Since(start),
		Notes: fmt.Sprintf("OTLP; %d of %d answers said 1 record rejected: counted as sidelog_dropped_total{reason=\"otlp_partial_success\"}, not resent", partial.Load(), proxy.requests.Load()),
	})
}

// TestReliabilityOTLPSIGKILL kills the agent several times while it ships to the otlpreceiver
// and restarts it on its state dir: nothing is lost, and only lines past the checkpoint come
// again.
func TestReliabilityOTLPSIGKILL(t *testing.T) {
	const rate = 5000
	d, kills := span(40*time.Second, 6*time.Second), span(5, 2)
	dir, state := t.TempDir(), t.TempDir()
	recv := startOTLPReceiver(t, false, nil)
	pod := otlpPod(t, dir, recv.URL, nil, "")
	lg := newApp(t, filepath.Join(dir, "app.log"))
	agent := startAgent(t, pod, dir, state)
	start := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() { lg.run(rate, d, 0, nil) })
	var inFlight int64 // lines past the checkpoint at the deaths
	var peak int64
	for range kills {
		time.Sleep(d / time.Duration(kills+1))
		agent.kill(t)
		written := lg.written()
		peak = max(peak, agent.peakRSS())
		entries, err := checkpoint.Load(state)
		if err != nil {
			t.Fatalf("checkpoint after SIGKILL: %v", err)
		}
		var offset int64
		for _, e := range entries {
			offset = max(offset, e.Offset)
		}
		inFlight += written - offset/lineBytes
		agent = startAgent(t, pod, dir, state)
	}
	wg.Wait()
	written := lg.written()
	recv.tally.waitAll(t, written, 2*time.Minute)
	if err := agent.stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM = %v, want 0", err)
	}
	peak = max(peak, agent.peakRSS())
	s := checkNothingLost(t, recv.tally, written)
	if s.Duplicates > inFlight {
		t.Errorf("%d duplicates, more than the %d lines past the checkpoints when the agent died", s.Duplicates, inFlight)
	}
	checkMemory(t, peak)
	figures.addAgent(t, agentFigures{
		Test: t.Name(), Written: written, Received: s.Received, Lost: s.Lost, Duplicates: s.Duplicates,
		PeakRSS: peak, Elapsed: time.Since(start),
		Notes: fmt.Sprintf("OTLP; %d SIGKILLs at %d lines/s, restarted on the same state dir", kills, rate),
	})
}

// TestUpstreamOTLPThroughTheAPIServer: a namespace's annotations choose OTLP over https with its
// own CA and a headers Secret. A pod created through the real API server comes back with the
// agent mounting the CA's one key and the whole headers Secret, and that agent, given the
// Secrets as a kubelet projects them, ships every line to the otlpreceiver over TLS with gzip and
// the tenant header.
func TestUpstreamOTLPThroughTheAPIServer(t *testing.T) {
	certs := generateTLS(t)
	recv := startOTLPReceiver(t, true, certs)

	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	const ns = "otel"
	createNamespace(t, cs, ns, true, map[string]string{
		injector.AnnotationUpstreamProtocol:   "otlp",
		injector.AnnotationUpstreamServerName: "localhost", // the certificate's name; the pod dials 127.0.0.1
		injector.AnnotationUpstreamCA:         "otel-ca",
		injector.AnnotationUpstreamHeaders:    "otel-tenant",
	})
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "otel-ca"}, Data: map[string][]byte{
			"ca.crt": certs.caPEM, "tls.key": []byte("not for the agent"),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "otel-tenant"}, Data: map[string][]byte{"X-Scope-OrgID": []byte("tenant-b")}},
	} {
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wo := env.WebhookInstallOptions
	_, metricsPort := splitHostPort(t, freeAddr(t))
	startWebhook(t, cfg, webhook.Options{
		Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		PolicyFile: writePolicy(t, fmt.Sprintf("metricsPort: %d\nupstreamCompression: gzip\n", metricsPort)),
	})

	logDir := t.TempDir()
	pod := logPod(logDir, map[string]string{
		injector.AnnotationTail + ".app": logDir + "/*.log",
		injector.AnnotationUpstream:      recv.URL,
	})
	pod.Namespace, pod.UID = ns, ""
	var created *corev1.Pod
	var err error
	eventually(t, 60*time.Second, "the API server to call the webhook", func() error {
		created, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if _, err := agentOf(created); err != nil {
			pod.Name += "x"
			return err
		}
		return nil
	})

	volumeDirs := map[string]string{"logs": logDir}
	for _, want := range []struct {
		volume, secret string
		keys           []string // nil: the whole Secret
	}{
		{injector.UpstreamCAVolume, "otel-ca", []string{"ca.crt"}},
		{injector.UpstreamHeadersVolume, "otel-tenant", nil},
	} {
		i := slices.IndexFunc(created.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == want.volume })
		if i < 0 {
			t.Fatalf("no volume %s in the injected pod: %+v", want.volume, created.Spec.Volumes)
		}
		sv := created.Spec.Volumes[i].Secret
		var keys []string
		if sv != nil {
			for _, it := range sv.Items {
				keys = append(keys, it.Key)
			}
		}
		if sv == nil || sv.SecretName != want.secret || !slices.Equal(keys, want.keys) {
			t.Fatalf("volume %s = %+v, want Secret %s with keys %v", want.volume, created.Spec.Volumes[i], want.secret, want.keys)
		}
		volumeDirs[want.volume] = projectSecret(t, cs, ns, sv)
	}

	agent := runInjectedAgent(t, created, volumeDirs)
	lines := numbered("otel", 0, 500)
	appendFile(t, filepath.Join(logDir, "app.log"), lines...)
	eventually(t, 2*time.Minute, fmt.Sprintf("%d records at the receiver", len(lines)), func() error {
		if n := len(recv.kept()); n < len(lines) {
			return fmt.Errorf("%d records", n)
		}
		return nil
	})
	if err := agent.stop(t); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, agent.output)
	}
	var got []string
	for _, r := range recv.kept() {
		got = append(got, fmt.Sprint(r.Body))
		if r.OrgHeader != "tenant-b" || r.Resource["k8s.namespace.name"] != ns {
			t.Fatalf("record %q: X-Scope-OrgID %q, namespace %v", r.Body, r.OrgHeader, r.Resource["k8s.namespace.name"])
		}
	}
	if diff := cmp.Diff(lines, got); diff != "" {
		t.Errorf("records, lost (-) or duplicated (+):\n%s", diff)
	}
}
