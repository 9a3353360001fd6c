package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
)

// BenchmarkHandleTLS sends AdmissionReviews for a pod that gets the agent straight to the
// webhook server (controller-runtime's, as in production) over TLS, from 1, 10 and 100
// concurrent clients on kept-alive connections as the API server uses them, and reports the
// latency percentiles of one request and the throughput. Client and server share the machine.
//
// The sidelog sub-benchmarks send the same pod every time, as a ReplicaSet's or a Job's pods
// arrive (generateName, no name yet, the same spec): from the second on, the handler answers
// from what it remembers (answers). The distinct ones give each pod a name of its own, as
// bare pods have, so that every request is decoded, injected and its patch encoded.
//
// The floor sub-benchmarks send the same AdmissionReview to a handler that allows every pod
// unchanged: what controller-runtime's server, TLS and the client cost before sidelog does
// anything, and so the best any handler could do here. The fixedpatch ones answer with the
// patch sidelog gives this pod, computed once: what carrying the agent in the answer costs
// (encoding it into the AdmissionReview, TLS, the client reading it), and so the best any
// injecting handler could do.
//
//	go test -run '^$' -bench HandleTLS -benchtime 20000x ./webhook
func BenchmarkHandleTLS(b *testing.B) {
	dir := b.TempDir()
	pool := selfSignedPair(b, dir)
	addr := listenAddr(b)
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)

	namespaces := cachedNamespaces{"shop": namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"})}
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: host, Port: p, CertDir: dir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12; c.NextProtos = []string{"http/1.1"} }}})
	srv.Register(Path, &admission.Webhook{Handler: NewHandler(namespaces, StaticPolicy(injector.DefaultPolicy()), ownNS)})
	const floorPath = "/allow"
	srv.Register(floorPath, &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})})
	pod := appPod(map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"})
	pod.Name = distinctName
	req := podRequest(b, "shop", admissionv1.Create, pod)
	fixed := NewHandler(namespaces, StaticPolicy(injector.DefaultPolicy()), ownNS).Handle(context.Background(), req)
	if len(fixed.Patch) == 0 {
		b.Fatalf("sidelog did not patch the benchmark's pod: %+v", fixed.Result)
	}
	const fixedPath = "/fixed-patch"
	srv.Register(fixedPath, &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		resp := fixed
		resp.Warnings = slices.Clone(fixed.Warnings) // Complete and the server write the copy
		return resp
	})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Start(ctx) }()

	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		b.Fatal(err)
	}
	same := func(int64) []byte { return review }
	for _, bench := range []struct {
		name, path, want string
		review           func(i int64) []byte
	}{
		{"sidelog", Path, `"patch":"`, same},
		{"sidelog-distinct", Path, `"patch":"`, distinctReviews(b, review)},
		{"fixedpatch", fixedPath, `"patch":"`, same},
		{"floor", floorPath, `"allowed":true`, same},
	} {
		for _, concurrency := range []int{1, 10, 100} {
			b.Run(bench.name+"/concurrency="+strconv.Itoa(concurrency), func(b *testing.B) {
				benchmarkPost(b, pool, "https://"+addr+bench.path, bench.review, bench.want, concurrency)
			})
		}
	}
}

// distinctName is the benchmark pod's name, whose digits distinctReviews replaces.
const distinctName = "web-000000000000"

// distinctReviews returns the i-th of review's copies that differ in the pod's name: no two
// requests of a run send the same pod.
func distinctReviews(b *testing.B, review []byte) func(i int64) []byte {
	at := bytes.Index(review, []byte(distinctName))
	if at < 0 || bytes.Count(review, []byte(distinctName)) != 1 {
		b.Fatalf("the review names the pod %s not exactly once", distinctName)
	}
	digits := at + len("web-")
	run := time.Now().UnixNano() % 1e6 // not the names of an earlier sub-benchmark's pods
	return func(i int64) []byte {
		r := bytes.Clone(review)
		copy(r[digits:], fmt.Sprintf("%06d%06d", run, i%1e6))
		return r
	}
}

// benchmarkPost posts review(i) to url for i from 0 to b.N from concurrency clients and reports
// the latency percentiles. Each answer must be allowed and contain want.
func benchmarkPost(b *testing.B, pool *x509.CertPool, url string, review func(int64) []byte, want string, concurrency int) {
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: concurrency,
	}}
	defer hc.CloseIdleConnections()
	// The API server's decoding of the answer is not the webhook's cost: check only that
	// it is allowed and has what the handler must have put in it.
	post := func(review []byte) error {
		resp, err := hc.Post(url, "application/json", bytes.NewReader(review))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"allowed":true`)) || !bytes.Contains(body, []byte(want)) {
			return fmt.Errorf("unexpected answer %s: %.200s", resp.Status, body)
		}
		return nil
	}
	waitUntil(b, func() bool { return post(review(-1)) == nil })

	latencies := make([]time.Duration, b.N)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				r := review(i)
				t0 := time.Now()
				if err := post(r); err != nil {
					failed.Add(1)
				}
				latencies[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	reportLatencies(b, latencies, elapsed)
}

// cachedNamespaces serves namespaces from memory with a deep copy, as controller-runtime's
// cache does, so that the benchmark does not measure the fake client's conversions.
type cachedNamespaces map[string]*corev1.Namespace

func (c cachedNamespaces) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ns, ok := c[key.Name]
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("namespaces"), key.Name)
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return fmt.Errorf("cachedNamespaces reads metadata only, not %T", obj)
	}
	ns.ObjectMeta.DeepCopyInto(&m.ObjectMeta)
	return nil
}

func (c cachedNamespaces) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cachedNamespaces cannot list")
}

// reportLatencies reports the median and 99th percentile in milliseconds and the throughput.
func reportLatencies(b *testing.B, latencies []time.Duration, elapsed time.Duration) {
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "req/s")
}

func waitUntil(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("webhook server not answering")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func listenAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// selfSignedPair writes tls.crt and tls.key for 127.0.0.1 to dir and returns a pool that
// trusts them.
func selfSignedPair(b *testing.B, dir string) *x509.CertPool {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}
