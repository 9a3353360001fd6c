package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

const (
	testNS     = "sidelog-system"
	testSecret = "sidelog-webhook-tls"
	testConfig = "sidelog"
)

func testConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	none := admissionregistrationv1.SideEffectClassNone
	hook := func(name string) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: testNS, Name: "sidelog"},
			},
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: testConfig},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{hook("a.sidelog.io"), hook("b.sidelog.io")},
	}
}

// clock is a settable time source shared by the rotators of a test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newRotator(t *testing.T, c client.Client, clk *clock) *Rotator {
	t.Helper()
	r, err := New(c, Options{
		Namespace: testNS, SecretName: testSecret, WebhookConfigName: testConfig,
		Hosts:      ServiceHosts("sidelog", testNS, "cluster.local"),
		CertDir:    t.TempDir(),
		CALifetime: 90 * time.Hour, CARenewBefore: 30 * time.Hour,
		ServingLifetime: 9 * time.Hour, ServingRenewBefore: 3 * time.Hour,
		RolloverDelay: time.Minute, Resync: time.Hour,
		Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkServing asserts that r's certificate directory holds a pair that the published caBundle
// of every webhook trusts for the Service's name, and that the Secret and the configuration
// agree on the revision.
func checkServing(t *testing.T, c client.Client, r *Rotator, now time.Time) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	pair, err := tls.LoadX509KeyPair(filepath.Join(r.o.CertDir, KeyCert), filepath.Join(r.o.CertDir, KeyKey))
	if err != nil {
		t.Fatalf("loading the written pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: testConfig}, cfg); err != nil {
		t.Fatal(err)
	}
	for _, wh := range cfg.Webhooks {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(wh.ClientConfig.CABundle) {
			t.Fatalf("webhook %s: caBundle holds no certificate", wh.Name)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "sidelog.sidelog-system.svc", Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("webhook %s: serving certificate not trusted through the caBundle: %v", wh.Name, err)
		}
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: testNS, Name: testSecret}, secret); err != nil {
		t.Fatal(err)
	}
	if s, c := secret.Annotations[RevisionAnnotation], cfg.Annotations[RevisionAnnotation]; s == "" || s != c {
		t.Errorf("revision: secret %q, webhook configuration %q; want equal and set", s, c)
	}
	return leaf
}

func TestRotatorLifecycle(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(testConfiguration()).Build()
	clk := &clock{now: time.Now()}
	r := newRotator(t, c, clk)

	if _, err := r.Reconcile(ctx); err != nil {
		t.Fatalf("first reconcile: %v", err)
	}
	select {
	case <-r.CertificateWritten():
	default:
		t.Fatal("CertificateWritten not closed after a successful reconcile")
	}
	first := checkServing(t, c, r, clk.Now())

	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: testNS, Name: testSecret}
	if err := c.Get(ctx, key, secret); err != nil {
		t.Fatal(err)
	}
	rv := secret.ResourceVersion
	if _, err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, key, secret); err != nil {
		t.Fatal(err)
	}
	if secret.ResourceVersion != rv {
		t.Errorf("an idle reconcile wrote the secret")
	}

	// Through a serving renewal and a CA rotation every step stays trusted.
	var serials []string
	for range 40 {
		clk.Add(2 * time.Hour)
		for range 2 { // the second pass lets a published CA become trusted
			if _, err := r.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Add(2 * time.Minute)
		}
		leaf := checkServing(t, c, r, clk.Now())
		serials = append(serials, leaf.SerialNumber.String())
	}
	if serials[len(serials)-1] == first.SerialNumber.String() {
		t.Error("serving certificate never renewed")
	}
	st, _ := parseState(mustSecret(t, c).Data, nil)
	if st.ca.cert.NotBefore.Before(first.NotBefore) || signedBy(first, st.ca.cert) {
		t.Error("CA never rotated over 80 hours of a 90-hour CA with renewal 30 hours before expiry")
	}
}

func mustSecret(t *testing.T, c client.Client) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: testNS, Name: testSecret}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRotatorRepairsCABundle(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(testConfiguration()).Build()
	clk := &clock{now: time.Now()}
	r := newRotator(t, c, clk)
	if _, err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// As a helm upgrade of a chart that templates an empty caBundle would.
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: testConfig}, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks[1].ClientConfig.CABundle = nil
	if err := c.Update(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	checkServing(t, c, r, clk.Now())
}

func TestRotatorReplicasAgree(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(testConfiguration()).Build()
	clk := &clock{now: time.Now()}
	replicas := []*Rotator{newRotator(t, c, clk), newRotator(t, c, clk), newRotator(t, c, clk)}

	for step := range 12 {
		var wg sync.WaitGroup
		errs := make([]error, len(replicas))
		for i, r := range replicas {
			wg.Go(func() { _, errs[i] = r.Reconcile(ctx) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("step %d, replica %d: %v", step, i, err)
			}
		}
		// Every replica serves what the Secret holds, and the caBundle trusts it.
		want := mustSecret(t, c).Data[KeyCert]
		for i, r := range replicas {
			got, err := os.ReadFile(filepath.Join(r.o.CertDir, KeyCert))
			if err != nil || string(got) != string(want) {
				t.Fatalf("step %d: replica %d serves another certificate than the Secret's (%v)", step, i, err)
			}
			checkServing(t, c, r, clk.Now())
		}
		clk.Add(7 * time.Hour)
	}
}

// A replica that read the Secret before another replica renewed the CA must not put the older
// caBundle back.
func TestRotatorStaleReplicaDoesNotRevertBundle(t *testing.T) {
	ctx := context.Background()
	base := fake.NewClientBuilder().WithObjects(testConfiguration()).Build()
	clk := &clock{now: time.Now()}
	a := newRotator(t, base, clk)
	if _, err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	stale := mustSecret(t, base)

	clk.Add(61 * time.Hour) // A renews the CA: revision 2
	if _, err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	newer := mustSecret(t, base)
	if newer.Annotations[RevisionAnnotation] != "2" {
		t.Fatalf("revision after CA renewal = %q, want 2", newer.Annotations[RevisionAnnotation])
	}

	// B's first read of the Secret returns what it held before A's renewal.
	served := false
	b := newRotator(t, interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if s, ok := obj.(*corev1.Secret); ok && !served {
				served = true
				stale.DeepCopyInto(s)
				return nil
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}), clk)
	if _, err := b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !served {
		t.Fatal("the stale Secret was never served")
	}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := base.Get(ctx, client.ObjectKey{Name: testConfig}, cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Annotations[RevisionAnnotation]; got != "2" {
		t.Errorf("webhook configuration revision = %s, want 2", got)
	}
	if got, want := string(cfg.Webhooks[0].ClientConfig.CABundle), string(newer.Data[KeyCABundle]); got != want {
		t.Error("the stale replica changed the caBundle")
	}
	if got := mustSecret(t, base).Annotations[RevisionAnnotation]; got != "2" {
		t.Errorf("secret revision = %s, want 2", got)
	}
}

func TestRotatorRestoredSecretIsRepublished(t *testing.T) {
	ctx := context.Background()
	cfg := testConfiguration()
	cfg.Annotations = map[string]string{RevisionAnnotation: "9"}
	c := fake.NewClientBuilder().WithObjects(cfg).Build()
	clk := &clock{now: time.Now()}
	r := newRotator(t, c, clk)
	if _, err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	checkServing(t, c, r, clk.Now())
	if got := mustSecret(t, c).Annotations[RevisionAnnotation]; got != strconv.Itoa(10) {
		t.Errorf("revision = %s, want 10 (past the configuration's 9)", got)
	}
}

func TestRotatorErrors(t *testing.T) {
	ctx := context.Background()
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, testSecret, errors.New("no RBAC"))
	tests := []struct {
		name      string
		objects   []client.Object
		funcs     interceptor.Funcs
		wantErr   string
		wantFiles bool
	}{
		{
			name:      "no webhook configuration: certificate still written",
			wantErr:   "mutatingwebhookconfiguration sidelog not found",
			wantFiles: true,
		},
		{
			name:    "secret cannot be created",
			objects: []client.Object{testConfiguration()},
			funcs: interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
				return forbidden
			}},
			wantErr: "writing secret sidelog-system/sidelog-webhook-tls",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := interceptor.NewClient(fake.NewClientBuilder().WithObjects(tt.objects...).Build(), tt.funcs)
			r := newRotator(t, c, &clock{now: time.Now()})
			_, err := r.Reconcile(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			_, statErr := os.Stat(filepath.Join(r.o.CertDir, KeyCert))
			if (statErr == nil) != tt.wantFiles {
				t.Errorf("certificate written = %v, want %v", statErr == nil, tt.wantFiles)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	base := Options{Namespace: "ns", SecretName: "s", WebhookConfigName: "w", Hosts: []string{"svc.ns.svc"}, CertDir: "/tmp/x"}
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr string
	}{
		{"valid", func(*Options) {}, ""},
		{"no namespace", func(o *Options) { o.Namespace = "" }, "Namespace is required"},
		{"no hosts", func(o *Options) { o.Hosts = nil }, "Hosts"},
		{"empty host", func(o *Options) { o.Hosts = []string{""} }, "Hosts"},
		{"renew before lifetime", func(o *Options) { o.ServingLifetime, o.ServingRenewBefore = time.Hour, time.Hour }, "ServingRenewBefore"},
		{"CA renewal too late for serving renewals", func(o *Options) {
			o.CALifetime, o.CARenewBefore, o.ServingLifetime = 10*time.Hour, time.Hour, 6*time.Hour
		}, "CARenewBefore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.edit(&o)
			_, err := New(fake.NewClientBuilder().Build(), o)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRotatorStartAndReadyCheck(t *testing.T) {
	tests := []struct {
		name      string
		objects   []client.Object
		wantReady bool
		wantErr   string
	}{
		{"ready", []client.Object{testConfiguration()}, true, ""},
		{"webhook configuration missing", nil, false, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(tt.objects...).Build()
			r := newRotator(t, c, &clock{now: time.Now()})
			if r.ReadyCheck(nil) == nil {
				t.Fatal("ready before Start")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- r.Start(ctx) }()
			deadline := time.Now().Add(20 * time.Second)
			var err error
			for time.Now().Before(deadline) {
				err = r.ReadyCheck(nil)
				if (err == nil) == tt.wantReady && (tt.wantErr == "" || (err != nil && strings.Contains(err.Error(), tt.wantErr))) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			if startErr := <-done; startErr != nil {
				t.Errorf("Start: %v", startErr)
			}
			if (err == nil) != tt.wantReady || (tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr))) {
				t.Errorf("ReadyCheck = %v, want ready %v (error containing %q)", err, tt.wantReady, tt.wantErr)
			}
			select {
			case <-r.CertificateWritten():
			default:
				t.Error("CertificateWritten not closed")
			}
		})
	}
}

// Once ready, a replica stays ready through API errors: its certificate is still good, and
// failing every replica's readiness at once would leave the Service without endpoints.
func TestRotatorStaysReadyThroughErrors(t *testing.T) {
	var gets atomic.Int64
	c := interceptor.NewClient(fake.NewClientBuilder().WithObjects(testConfiguration()).Build(), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok && gets.Add(1) > 1 {
				return apierrors.NewServiceUnavailable("API server restarting")
			}
			return c.Get(ctx, key, obj, opts...)
		},
	})
	r, err := New(c, Options{
		Namespace: testNS, SecretName: testSecret, WebhookConfigName: testConfig,
		Hosts: []string{"sidelog.sidelog-system.svc"}, CertDir: t.TempDir(), Resync: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Start(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for gets.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	err = r.ReadyCheck(nil)
	cancel()
	<-done
	if gets.Load() < 3 {
		t.Fatal("no reconciliation after the first")
	}
	if err != nil {
		t.Errorf("ReadyCheck after a later failure = %v, want ready", err)
	}
}

// TestRotatorPatchesOnlyCABundle checks that publishing sends a JSON patch of the caBundles and
// the revision annotation alone: a field another tool changed since is never put back.
func TestRotatorPatchesOnlyCABundle(t *testing.T) {
	var patches []string
	tool := false // true while the test plays another tool
	c := interceptor.NewClient(fake.NewClientBuilder().WithObjects(testConfiguration()).Build(), interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			data, err := patch.Data(obj)
			if err != nil {
				return err
			}
			if patch.Type() != types.JSONPatchType {
				t.Errorf("patch type %s, want %s", patch.Type(), types.JSONPatchType)
			}
			patches = append(patches, string(data))
			return c.Patch(ctx, obj, patch, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if _, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok && !tool {
				t.Error("the webhook configuration was updated as a whole")
			}
			return c.Update(ctx, obj, opts...)
		},
	})
	r := newRotator(t, c, &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 1 {
		t.Fatalf("got %d patches, want 1", len(patches))
	}
	var ops []struct{ Op, Path string }
	if err := json.Unmarshal([]byte(patches[0]), &ops); err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		switch {
		case o.Op == "replace" && o.Path == "/metadata/resourceVersion",
			o.Op == "test" && strings.HasSuffix(o.Path, "/name"),
			o.Op == "add" && (o.Path == "/metadata/annotations" || strings.HasSuffix(o.Path, "/clientConfig/caBundle")):
		default:
			t.Errorf("patch operation %s %s touches more than the caBundle: %s", o.Op, o.Path, patches[0])
		}
	}

	// Another tool changes a webhook between the rotator's read and its patch: the patch is
	// refused as a conflict, and the next reconciliation keeps the tool's change.
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: testConfig}, cfg); err != nil {
		t.Fatal(err)
	}
	timeout := int32(7)
	cfg.Webhooks[1].TimeoutSeconds = &timeout
	cfg.Webhooks[0].ClientConfig.CABundle = nil
	tool = true
	if err := c.Update(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	tool = false
	if _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Name: testConfig}, cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Webhooks[1].TimeoutSeconds == nil || *cfg.Webhooks[1].TimeoutSeconds != 7 || len(cfg.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Errorf("after the repair: timeoutSeconds %v, caBundle %d bytes; want 7 kept and the caBundle back", cfg.Webhooks[1].TimeoutSeconds, len(cfg.Webhooks[0].ClientConfig.CABundle))
	}
}
