// Package certs makes and rotates the webhook's TLS certificates for clusters without
// cert-manager.
//
// A Rotator keeps a CA and a serving certificate in one Secret, writes the serving pair to the
// webhook server's certificate directory (controller-runtime's certwatcher reloads it) and keeps
// the caBundle of the MutatingWebhookConfiguration in step. It renews the serving certificate
// well before it expires; when the CA itself is renewed the previous CA stays in the caBundle
// until it expires, and the serving certificate moves to the new CA only after the new bundle
// has been published for Options.RolloverDelay, so no admission call fails across a rotation.
//
// Every replica of the webhook runs a Rotator against the same Secret. They agree through
// optimistic concurrency: the Secret is written only with the resourceVersion it was read at,
// and the caBundle carries the bundle's revision (RevisionAnnotation), so a replica holding an
// older Secret never overwrites a newer bundle. Only the Secret and the webhook configuration
// are read or written, each by name.
package certs

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options configure a Rotator. Namespace, SecretName, WebhookConfigName, Hosts and CertDir are
// required; zero durations take the defaults.
type Options struct {
	// Namespace and SecretName name the Secret that holds the CA and the serving certificate.
	// It is created if missing (which needs "create" on secrets); a chart may instead create it
	// empty so that the webhook needs only get and update on it, by name.
	Namespace  string
	SecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose webhooks get the caBundle.
	WebhookConfigName string
	// Hosts are the DNS names and IP addresses the serving certificate is valid for: the
	// Service's names (see ServiceHosts).
	Hosts []string
	// CertDir is where tls.crt and tls.key are written.
	CertDir string

	// CALifetime is how long a CA is valid. Default 365 days.
	CALifetime time.Duration
	// CARenewBefore is how long before its expiry a CA is replaced. Default CALifetime/3.
	CARenewBefore time.Duration
	// ServingLifetime is how long a serving certificate is valid. Default 30 days.
	ServingLifetime time.Duration
	// ServingRenewBefore is how long before its expiry a serving certificate is replaced.
	// Default ServingLifetime/3.
	ServingRenewBefore time.Duration
	// RolloverDelay is how long a new CA is published in the caBundle before it signs the
	// serving certificate: the time every API server needs to load the new bundle. Default 2m.
	RolloverDelay time.Duration
	// Resync is the longest time between two reconciliations; it bounds how long a caBundle
	// that someone else overwrote stays wrong. Default 1m.
	Resync time.Duration

	// Log receives what the Rotator changes and the errors it retries. Default: discard.
	Log logr.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// ServiceHosts returns the DNS names by which the API server may reach a Service.
func ServiceHosts(service, namespace, clusterDomain string) []string {
	h := []string{service, service + "." + namespace, service + "." + namespace + ".svc"}
	if clusterDomain != "" {
		h = append(h, service+"."+namespace+".svc."+clusterDomain)
	}
	return h
}

// Rotator keeps the webhook's certificates; see the package documentation.
type Rotator struct {
	c      client.Client
	o      Options
	hosts  []string
	timing timing

	mu        sync.Mutex
	published map[[sha256.Size]byte]time.Time // CA fingerprint → first seen in the caBundle
	lastErr   error
	synced    bool // a reconciliation has published the caBundle
	written   chan struct{}
	once      sync.Once
}

// New returns a Rotator that uses c, which must read the Secret and the webhook configuration
// from the API server rather than from a cache (a cache would need list and watch on every
// Secret).
func New(c client.Client, o Options) (*Rotator, error) {
	switch {
	case o.Namespace == "":
		return nil, errors.New("certs: Namespace is required")
	case o.SecretName == "":
		return nil, errors.New("certs: SecretName is required")
	case o.WebhookConfigName == "":
		return nil, errors.New("certs: WebhookConfigName is required")
	case o.CertDir == "":
		return nil, errors.New("certs: CertDir is required")
	}
	hosts, err := canonicalHosts(o.Hosts)
	if err != nil || len(hosts) == 0 {
		return nil, fmt.Errorf("certs: Hosts: want at least one DNS name or IP address, got %q", o.Hosts)
	}
	day := 24 * time.Hour
	o.CALifetime = orDefault(o.CALifetime, 365*day)
	o.CARenewBefore = orDefault(o.CARenewBefore, o.CALifetime/3)
	o.ServingLifetime = orDefault(o.ServingLifetime, 30*day)
	o.ServingRenewBefore = orDefault(o.ServingRenewBefore, o.ServingLifetime/3)
	o.RolloverDelay = orDefault(o.RolloverDelay, 2*time.Minute)
	o.Resync = orDefault(o.Resync, time.Minute)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	if o.CARenewBefore >= o.CALifetime {
		return nil, fmt.Errorf("certs: CARenewBefore (%s) must be shorter than CALifetime (%s)", o.CARenewBefore, o.CALifetime)
	}
	if o.ServingRenewBefore >= o.ServingLifetime {
		return nil, fmt.Errorf("certs: ServingRenewBefore (%s) must be shorter than ServingLifetime (%s)", o.ServingRenewBefore, o.ServingLifetime)
	}
	// A CA is replaced while the serving certificates it signed are still far from renewal,
	// so no serving certificate is ever cut short by its CA's expiry.
	if o.CARenewBefore <= o.ServingRenewBefore+o.RolloverDelay {
		return nil, fmt.Errorf("certs: CARenewBefore (%s) must be longer than ServingRenewBefore + RolloverDelay (%s)", o.CARenewBefore, o.ServingRenewBefore+o.RolloverDelay)
	}
	return &Rotator{
		c:     c,
		o:     o,
		hosts: hosts,
		timing: timing{
			caLifetime: o.CALifetime, caRenewBefore: o.CARenewBefore,
			servingLifetime: o.ServingLifetime, servingRenewBefore: o.ServingRenewBefore,
			rolloverDelay: o.RolloverDelay, resync: o.Resync,
		},
		published: map[[sha256.Size]byte]time.Time{},
		written:   make(chan struct{}),
	}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// CertificateWritten is closed once CertDir holds a serving certificate, which the webhook
// server needs before it can start.
func (r *Rotator) CertificateWritten() <-chan struct{} { return r.written }

// ReadyCheck reports an error until a reconciliation has written the certificate and published
// the caBundle; after that it passes, so that a brief API server outage does not take every
// replica out of the Service (the certificate in use stays valid for a long time). Its
// signature is controller-runtime's healthz.Checker.
func (r *Rotator) ReadyCheck(*http.Request) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.synced {
		return nil
	}
	if r.lastErr != nil {
		return r.lastErr
	}
	return errors.New("certificates not reconciled yet")
}

// NeedLeaderElection tells controller-runtime's manager that every replica runs a Rotator: each
// must write its own certificate directory.
func (r *Rotator) NeedLeaderElection() bool { return false }

// Start reconciles until ctx is done: at once, then whenever a certificate is due, at least
// every Options.Resync, and with backoff after an error.
func (r *Rotator) Start(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		wake, err := r.Reconcile(ctx)
		r.mu.Lock()
		r.lastErr = err
		r.synced = r.synced || err == nil
		r.mu.Unlock()
		delay := time.Until(wake)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(2*backoff, 500*time.Millisecond), r.o.Resync)
			delay = backoff
			r.o.Log.Error(err, "reconciling webhook certificates; will retry", "after", delay)
		} else {
			backoff = 0
			// A floor, so that a certificate that is due again at once cannot spin the loop.
			delay = max(delay, minDelay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// minDelay is the shortest wait between two successful reconciliations.
const minDelay = time.Second

// errStale means that another replica changed the Secret or the caBundle since we read them.
var errStale = errors.New("stale read")

// Reconcile brings the Secret, the certificate directory and the caBundle in step once, and
// returns when it should run next. Conflicts with other replicas are retried at once.
func (r *Rotator) Reconcile(ctx context.Context) (time.Time, error) {
	const attempts = 5
	var err error
	for range attempts {
		var wake time.Time
		wake, err = r.reconcile(ctx)
		if !errors.Is(err, errStale) {
			return wake, err
		}
	}
	return time.Time{}, fmt.Errorf("%d attempts lost a race with another writer: %w", attempts, err)
}

func (r *Rotator) reconcile(ctx context.Context) (time.Time, error) {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	cfgErr := r.c.Get(ctx, client.ObjectKey{Name: r.o.WebhookConfigName}, cfg)
	switch {
	case apierrors.IsNotFound(cfgErr):
		cfg = nil
		cfgErr = fmt.Errorf("mutatingwebhookconfiguration %s not found", r.o.WebhookConfigName)
	case cfgErr != nil:
		return time.Time{}, fmt.Errorf("reading mutatingwebhookconfiguration %s: %w", r.o.WebhookConfigName, cfgErr)
	}
	liveRevision := int64(0)
	if cfg != nil {
		liveRevision = revisionOf(cfg.Annotations)
		r.notePublished(cfg)
	}

	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: r.o.Namespace, Name: r.o.SecretName}
	exists := true
	if err := r.c.Get(ctx, key, secret); apierrors.IsNotFound(err) {
		exists = false
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.o.Namespace, Name: r.o.SecretName},
			Type:       corev1.SecretTypeOpaque,
		}
	} else if err != nil {
		return time.Time{}, fmt.Errorf("reading secret %s: %w", key, err)
	}
	cur, problems := parseState(secret.Data, secret.Annotations)
	for _, p := range problems {
		r.o.Log.Info("ignoring unusable part of the secret", "secret", key, "problem", p.Error())
	}

	now := r.o.Now()
	p, err := decide(cur, r.hosts, liveRevision, r.publishedSince(cur.ca), now, r.timing)
	if err != nil {
		return time.Time{}, err
	}
	if p.changed {
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[RevisionAnnotation] = strconv.FormatInt(p.next.revision, 10)
		secret.Data = p.next.data()
		if exists {
			err = r.c.Update(ctx, secret) // carries the resourceVersion we read: optimistic lock
		} else {
			err = r.c.Create(ctx, secret)
		}
		switch {
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			return time.Time{}, fmt.Errorf("writing secret %s: %w", key, errStale)
		case err != nil:
			return time.Time{}, fmt.Errorf("writing secret %s: %w", key, err)
		}
		r.o.Log.Info("updated webhook certificates", "secret", key, "reasons", p.reasons,
			"revision", p.next.revision, "servingNotAfter", p.next.serving.cert.NotAfter, "caNotAfter", p.next.ca.cert.NotAfter)
	}

	changed, err := writePair(r.o.CertDir, p.next.serving.certPEM, p.next.serving.keyPEM)
	if err != nil {
		return time.Time{}, fmt.Errorf("writing the serving certificate to %s: %w", r.o.CertDir, err)
	}
	if changed {
		r.o.Log.Info("wrote serving certificate", "dir", r.o.CertDir, "notAfter", p.next.serving.cert.NotAfter)
	}
	r.once.Do(func() { close(r.written) })

	if cfg == nil {
		return time.Time{}, cfgErr
	}
	if err := r.publish(ctx, cfg, p.next); err != nil {
		return time.Time{}, err
	}
	return p.wake, nil
}

// publish sets the caBundle of every webhook in cfg to st's bundle, unless cfg carries a newer
// revision.
func (r *Rotator) publish(ctx context.Context, cfg *admissionregistrationv1.MutatingWebhookConfiguration, st state) error {
	live := revisionOf(cfg.Annotations)
	if live > st.revision {
		return fmt.Errorf("caBundle of %s has revision %d, newer than %d: %w", cfg.Name, live, st.revision, errStale)
	}
	bundle := st.bundlePEM()
	rev := strconv.FormatInt(st.revision, 10)
	changed := cfg.Annotations[RevisionAnnotation] != rev
	for i := range cfg.Webhooks {
		if string(cfg.Webhooks[i].ClientConfig.CABundle) != string(bundle) {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	patch, err := caBundlePatch(cfg, bundle, rev)
	if err != nil {
		return fmt.Errorf("patching caBundle of mutatingwebhookconfiguration %s: %w", cfg.Name, err)
	}
	if err := r.c.Patch(ctx, cfg, patch); err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("patching caBundle of mutatingwebhookconfiguration %s: %w", cfg.Name, errStale)
		}
		return fmt.Errorf("patching caBundle of mutatingwebhookconfiguration %s: %w", cfg.Name, err)
	}
	r.o.Log.Info("published caBundle", "mutatingwebhookconfiguration", cfg.Name, "revision", st.revision, "cas", len(st.trusted()))
	r.notePublished(cfg)
	return nil
}

// caBundlePatch is a JSON patch (RFC 6902) that sets the caBundle of every webhook of cfg and
// the revision annotation, and nothing else: a helm upgrade or another tool changing the rest of
// the configuration between our read and our write is never undone. The resourceVersion we read
// makes the API server refuse the patch (Conflict) when anything changed since, as an Update
// would; the test of each webhook's name keeps an index from pointing at another webhook.
func caBundlePatch(cfg *admissionregistrationv1.MutatingWebhookConfiguration, bundle []byte, revision string) (client.Patch, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	ops := []op{{"replace", "/metadata/resourceVersion", cfg.ResourceVersion}}
	if cfg.Annotations == nil {
		ops = append(ops, op{"add", "/metadata/annotations", map[string]string{RevisionAnnotation: revision}})
	} else {
		ops = append(ops, op{"add", "/metadata/annotations/" + jsonPointerEscape(RevisionAnnotation), revision})
	}
	for i, wh := range cfg.Webhooks {
		at := "/webhooks/" + strconv.Itoa(i)
		ops = append(ops,
			op{"test", at + "/name", wh.Name},
			op{"add", at + "/clientConfig/caBundle", bundle}) // []byte: base64, as the API wants
	}
	data, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	return client.RawPatch(types.JSONPatchType, data), nil
}

// jsonPointerEscape escapes a key for a JSON pointer (RFC 6901).
func jsonPointerEscape(key string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

// notePublished records when each CA was first seen in the caBundle of every webhook of cfg.
func (r *Rotator) notePublished(cfg *admissionregistrationv1.MutatingWebhookConfiguration) {
	if len(cfg.Webhooks) == 0 {
		return
	}
	seen := map[[sha256.Size]byte]int{}
	for _, wh := range cfg.Webhooks {
		cas, err := parseCertificates(wh.ClientConfig.CABundle)
		if err != nil {
			continue
		}
		for _, ca := range cas {
			seen[fingerprint(ca)]++
		}
	}
	now := r.o.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for fp, n := range seen {
		if _, ok := r.published[fp]; !ok && n == len(cfg.Webhooks) {
			r.published[fp] = now
		}
	}
}

// publishedSince returns when ca was first seen in the caBundle, or zero.
func (r *Rotator) publishedSince(ca *keyPair) time.Time {
	if ca == nil {
		return time.Time{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.published[fingerprint(ca.cert)]
}

func revisionOf(annotations map[string]string) int64 {
	rev, err := strconv.ParseInt(annotations[RevisionAnnotation], 10, 64)
	if err != nil || rev < 0 {
		return 0
	}
	return rev
}
