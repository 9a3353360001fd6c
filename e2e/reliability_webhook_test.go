package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/webhook"
)

// webhookProcess is `sidelog webhook` running as a process, its memory watched.
type webhookProcess struct {
	url    string // of the admission endpoint
	health string
	client *http.Client
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan error
	mem    *memoryWatch
}

// startWebhookProcess runs the sidelog binary's webhook against the control plane of cfg,
// serving TLS on host:port with the certificate in certDir (signed by caPEM), until the test
// ends, and waits until it is ready.
func startWebhookProcess(tb testing.TB, cfg *rest.Config, host string, port int, certDir string, caPEM []byte) *webhookProcess {
	tb.Helper()
	kubeconfig := writeKubeconfig(tb, cfg)
	healthAddr := freeAddr(tb)
	cmd := exec.Command(binary(tb, "sidelog"), "webhook",
		"--kubeconfig", kubeconfig, "--namespace", ownNS,
		"--host", host, "--port", strconv.Itoa(port), "--cert-dir", certDir,
		"--health-addr", healthAddr, "--metrics-addr", freeAddr(tb))
	p := &webhookProcess{
		url: fmt.Sprintf("https://%s:%d%s", host, port, webhook.Path), health: "http://" + healthAddr,
		cmd: cmd, output: new(syncBuffer), done: make(chan error, 1),
	}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	p.mem = watchMemory(cmd.Process.Pid)
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-p.done
		}
		p.mem.stop()
		if tb.Failed() {
			tb.Logf("webhook output:\n%s", p.output)
		}
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		tb.Fatal("no CA certificate for the webhook's serving certificate")
	}
	p.client = &http.Client{
		Timeout: 30 * time.Second, // a hang is a failure, not a wait
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 200,
		},
	}
	p.waitReady(tb)
	return p
}

func (p *webhookProcess) waitReady(tb testing.TB) {
	tb.Helper()
	eventually(tb, 60*time.Second, "the webhook process ready", func() error {
		select {
		case err := <-p.done:
			p.done <- err
			tb.Fatalf("the webhook process exited: %v\n%s", err, p.output)
		default:
		}
		resp, err := http.Get(p.health + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
}

// alive fails the test if the process has exited or its health check fails.
func (p *webhookProcess) alive(tb testing.TB) {
	tb.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		tb.Fatalf("the webhook process exited: %v\n%s", err, p.output)
	default:
	}
	resp, err := http.Get(p.health + "/healthz")
	if err != nil {
		tb.Fatalf("the webhook's health check: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("the webhook's health check: %s", resp.Status)
	}
}

// review posts body to the admission endpoint and decodes the AdmissionReview it answers.
func (p *webhookProcess) review(body []byte, contentType string) (*admissionv1.AdmissionResponse, error) {
	resp, err := p.client.Post(p.url, contentType, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %.200s", resp.Status, b)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &ar); err != nil {
		return nil, fmt.Errorf("decoding the answer: %w: %.200s", err, b)
	}
	if ar.Response == nil {
		return nil, fmt.Errorf("an AdmissionReview without a response: %.200s", b)
	}
	return ar.Response, nil
}

func writeKubeconfig(tb testing.TB, cfg *rest.Config) string {
	tb.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(tb.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// admissionReview is the AdmissionReview the API server sends for creating pod in namespace.
func admissionReview(tb testing.TB, uid, namespace string, pod *corev1.Pod) []byte {
	tb.Helper()
	pod = pod.DeepCopy()
	pod.Namespace = namespace
	pod.APIVersion, pod.Kind = "v1", "Pod"
	raw, err := json.Marshal(pod)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(uid),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: namespace, Name: pod.Name, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// load runs n calls of call from concurrency goroutines and returns their latencies, the
// number that failed and the first failure.
func load(n, concurrency int, call func(i int) error) (latencies []time.Duration, failed int, first error, elapsed time.Duration) {
	latencies = make([]time.Duration, n)
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				t0 := time.Now()
				err := call(i)
				latencies[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = fmt.Errorf("call %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return latencies, failed, first, time.Since(start)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

// TestReliabilityWebhook puts the webhook process under load, straight over TLS and through a
// real kube-apiserver, and then sends it what no API server would: every call gets an answer
// (an admission, a clear refusal or a 400), none crashes or hangs it.
func TestReliabilityWebhook(t *testing.T) {
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	wo := env.WebhookInstallOptions
	cs := kubernetes.NewForConfigOrDie(cfg)
	createNamespace(t, cs, ownNS, false, nil)
	createNamespace(t, cs, "load", true, map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"})
	const concurrency = 100
	n := span(10000, 1000)
	start := func(t *testing.T) *webhookProcess {
		return startWebhookProcess(t, cfg, wo.LocalServingHost, wo.LocalServingPort, wo.LocalServingCertDir, wo.LocalServingCAData)
	}

	t.Run("direct-TLS", func(t *testing.T) {
		wh := start(t)
		pod := appPod("web", tail())
		lat, failed, first, elapsed := load(n, concurrency, func(i int) error {
			uid := fmt.Sprintf("uid-%d", i)
			resp, err := wh.review(admissionReview(t, uid, "load", pod), "application/json")
			switch {
			case err != nil:
				return err
			case string(resp.UID) != uid:
				return fmt.Errorf("answer for uid %q, want %q", resp.UID, uid)
			case !resp.Allowed || len(resp.Patch) == 0:
				return fmt.Errorf("allowed %v with %d bytes of patch, want the agent's patch: %+v", resp.Allowed, len(resp.Patch), resp.Result)
			}
			return nil
		})
		wh.alive(t)
		recordLoad(t, wh, n, lat, failed, first, elapsed, fmt.Sprintf("%d AdmissionReviews POSTed at %d concurrent over TLS, %.0f/s", n, concurrency, float64(n)/elapsed.Seconds()))
	})

	t.Run("through-API-server", func(t *testing.T) {
		wh := start(t)
		pod := appPod("web", tail())
		dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		create := func(int) error {
			got, err := cs.CoreV1().Pods("load").Create(context.Background(), pod, dryRun)
			if err != nil {
				return err
			}
			_, err = agentOf(got)
			return err
		}
		eventually(t, 60*time.Second, "the API server calling the webhook", func() error { return create(0) })
		lat, failed, first, elapsed := load(n, concurrency, create)
		wh.alive(t)
		recordLoad(t, wh, n, lat, failed, first, elapsed, fmt.Sprintf("%d dry-run pod creates at %d concurrent through kube-apiserver (failurePolicy Fail, timeout 5s), %.0f/s", n, concurrency, float64(n)/elapsed.Seconds()))
	})

	t.Run("abuse", func(t *testing.T) {
		wh := start(t)
		var lat []time.Duration
		failed := 0
		for _, c := range abuseCases(t) {
			t0 := time.Now()
			resp, err := wh.review(c.body, cmpOr(c.contentType, "application/json"))
			lat = append(lat, time.Since(t0))
			if err == nil {
				err = c.want(resp)
			}
			if err != nil {
				failed++
				t.Errorf("%s: %v", c.name, err)
			}
			wh.alive(t)
		}
		// And it still does its job.
		resp, err := wh.review(admissionReview(t, "after", "load", appPod("web", tail())), "application/json")
		if err != nil || !resp.Allowed || len(resp.Patch) == 0 {
			t.Errorf("an ordinary pod after the abuse: %v, %+v", err, resp)
		}
		slices.Sort(lat)
		figures.addWebhook(t, webhookFigures{
			Test: t.Name(), Requests: len(lat), Errors: failed, P50: percentile(lat, 0.5), P99: percentile(lat, 0.99),
			PeakRSS: wh.mem.peak(), Elapsed: lat[len(lat)-1],
			Notes: "malformed and hostile AdmissionReviews, one at a time: every one answered with an admission, a refusal naming the annotation, or a 400/413; time = the slowest",
		})
	})
}

func recordLoad(t *testing.T, wh *webhookProcess, n int, lat []time.Duration, failed int, first error, elapsed time.Duration, notes string) {
	t.Helper()
	if failed > 0 {
		t.Errorf("%d of %d calls failed; the first: %v", failed, n, first)
	}
	slices.Sort(lat)
	figures.addWebhook(t, webhookFigures{
		Test: t.Name(), Requests: n, Errors: failed, P50: percentile(lat, 0.5), P99: percentile(lat, 0.99),
		PeakRSS: wh.mem.peak(), Elapsed: elapsed, Notes: notes,
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type abuseCase struct {
	name        string
	body        []byte
	contentType string
	want        func(*admissionv1.AdmissionResponse) error
}

// refused wants a refusal with one of codes whose message contains every one of words.
func refused(codes []int32, words ...string) func(*admissionv1.AdmissionResponse) error {
	return func(r *admissionv1.AdmissionResponse) error {
		if r.Allowed {
			return fmt.Errorf("allowed (%d bytes of patch), want a refusal", len(r.Patch))
		}
		if r.Result == nil || !slices.Contains(codes, r.Result.Code) {
			return fmt.Errorf("refused with %+v, want code %v", r.Result, codes)
		}
		for _, w := range words {
			if !strings.Contains(r.Result.Message, w) {
				return fmt.Errorf("refused with %q, want it to say %q", r.Result.Message, w)
			}
		}
		return nil
	}
}

// admitted wants the pod admitted, with the agent's patch if patched.
func admitted(patched bool) func(*admissionv1.AdmissionResponse) error {
	return func(r *admissionv1.AdmissionResponse) error {
		if !r.Allowed || (len(r.Patch) > 0) != patched {
			return fmt.Errorf("allowed %v with %d bytes of patch (%+v), want allowed, patched %v", r.Allowed, len(r.Patch), r.Result, patched)
		}
		return nil
	}
}

var badRequest = []int32{http.StatusBadRequest}

func abuseCases(t *testing.T) []abuseCase {
	ok := admissionReview(t, "ok", "load", appPod("web", tail()))
	withObject := func(raw string) []byte {
		return bytes.Replace(ok, []byte(`"object":{`), []byte(`"object":`+raw+`,"ignored":{`), 1)
	}
	pod := func(annotations ...string) []byte {
		return admissionReview(t, "abuse", "load", appPod("web", tail(annotations...)))
	}
	manyAnnotations := map[string]string{}
	for i := range 5000 {
		manyAnnotations[fmt.Sprintf("%s.c%d", injector.AnnotationTail, i)] = "/var/log/app/*.log"
	}
	thousands := appPod("web", manyAnnotations)
	globs := func(n int) string {
		g := make([]string, n)
		for i := range g {
			g[i] = fmt.Sprintf("/l/%d", i)
		}
		return strings.Join(g, ",")
	}
	return []abuseCase{
		{name: "empty body", body: nil, want: refused(badRequest)},
		{name: "not JSON", body: []byte("GET / HTTP/1.1\r\n\r\n"), want: refused(badRequest)},
		{name: "truncated JSON", body: ok[:len(ok)/2], want: refused(badRequest)},
		{name: "wrong content type", body: ok, contentType: "text/plain", want: refused(badRequest)},
		// Decoded as an AdmissionReview without a request: nothing to do (no API server sends it).
		{name: "a Pod instead of an AdmissionReview", body: mustJSON(t, appPod("web", tail())), want: admitted(false)},
		{name: "object is a string", body: withObject(`"a pod"`), want: refused(badRequest)},
		{name: "object with a wrong type", body: withObject(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":"app"}}`), want: refused(badRequest)},
		{name: "JSON nested 100000 deep", body: withObject(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)), want: refused(badRequest)},
		{name: "8 MiB body", body: append(bytes.Repeat([]byte(" "), 8<<20), ok...), want: refused([]int32{http.StatusRequestEntityTooLarge})},
		{name: "tail annotation of 1 MiB", body: pod(injector.AnnotationTail+".app", "/var/log/app/"+strings.Repeat("x", 1<<20)+".log"),
			want: refused([]int32{http.StatusForbidden}, injector.AnnotationTail+".app")},
		{name: "tail annotation of 200 KiB (under the API server's 256 KiB)", body: pod(injector.AnnotationTail+".app", "/var/log/app/"+strings.Repeat("x", 200<<10)+".log"),
			want: refused([]int32{http.StatusForbidden}, injector.AnnotationTail+".app")},
		{name: "2000 globs", body: pod(injector.AnnotationTail+".app", globs(2000)),
			want: refused([]int32{http.StatusForbidden}, injector.AnnotationTail+".app", "maxGlobs")},
		{name: "20000 globs", body: pod(injector.AnnotationTail+".app", globs(20000)),
			want: refused([]int32{http.StatusForbidden}, injector.AnnotationTail+".app")},
		{name: "5000 annotations for containers that do not exist", body: admissionReview(t, "many", "load", thousands),
			want: refused([]int32{http.StatusForbidden}, injector.AnnotationTail)},
		{name: "1000 nested **", body: pod(injector.AnnotationTail+".app", "/var/log/app"+strings.Repeat("/**", 1000)+"/*.log"), want: admitted(true)},
		{name: "a huge multiline regex", body: pod(injector.AnnotationMultiline+".app", strings.Repeat("(a|b)*", 20000)),
			want: refused([]int32{http.StatusForbidden}, injector.AnnotationMultiline+".app")},
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
