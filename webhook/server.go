package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/certs"
	"github.com/sidelog/sidelog/injector"
)

// Options configure the webhook process.
type Options struct {
	// Host and Port are where the webhook serves TLS. Port default 9443.
	Host string
	Port int
	// CertDir holds tls.crt and tls.key, reloaded when they change: mounted from cert-manager's
	// Secret, or written by the Rotator when Certs is set.
	CertDir string
	// HealthAddr serves /healthz and /readyz; MetricsAddr serves /metrics. "0" disables either.
	HealthAddr  string
	MetricsAddr string
	// MetricsSecure serves /metrics over HTTPS (a self-signed certificate) to callers whose
	// bearer token the API server authenticates (TokenReview) and authorises for GET /metrics
	// (SubjectAccessReview), as kubebuilder's projects do; false serves plain HTTP, which
	// should then listen on localhost only.
	MetricsSecure bool
	// PolicyFile is the cluster policy, reloaded when it changes; empty for the built-in
	// policy.
	PolicyFile string
	// Namespace is the webhook's own namespace: its pods are never changed.
	Namespace string
	// Certs, when set, makes the webhook manage its own certificates (certs.Rotator); its
	// CertDir is set to CertDir, and its Namespace defaults to Namespace. Nil when
	// cert-manager or another tool provides them.
	Certs *certs.Options
	// Log is the logger of the webhook and of controller-runtime's components.
	Log logr.Logger
	// FailurePolicy is the failurePolicy of the webhook configuration (see
	// Handler.FailurePolicy): Fail (default) or Ignore.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// ShutdownDelay is how long Run keeps serving after its context is done, with /readyz
	// failing, before it stops the server (which then finishes the requests in flight): the
	// time for the endpoints controller and every kube-proxy or API server to stop sending
	// requests to a replica that is going away.
	ShutdownDelay time.Duration
	// NoOwnerLookup leaves out the lookup of a ReplicaSet's or Job's controller (a Deployment,
	// a CronJob) and the cache of ReplicaSets' and Jobs' metadata it reads: records then name
	// the pod's own controller only. For clusters so large that the cache (about 700 bytes a
	// ReplicaSet) does not fit, or RBAC that must not list ReplicaSets and Jobs.
	NoOwnerLookup bool
}

// NewManager returns a controller-runtime manager that serves the webhook as o says, with the
// namespace cache, the policy watcher and, if o.Certs is set, the certificate rotator. Start it
// to run them all.
func NewManager(cfg *rest.Config, o Options) (manager.Manager, error) {
	mgr, _, err := newManager(cfg, o)
	return mgr, err
}

func newManager(cfg *rest.Config, o Options) (manager.Manager, *atomic.Bool, error) {
	draining := new(atomic.Bool)
	mgr, err := buildManager(cfg, o, draining)
	return mgr, draining, err
}

func buildManager(cfg *rest.Config, o Options, draining *atomic.Bool) (manager.Manager, error) {
	switch o.FailurePolicy {
	case "", admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
	default:
		return nil, fmt.Errorf("failure policy: want %s or %s, got %q", admissionregistrationv1.Fail, admissionregistrationv1.Ignore, o.FailurePolicy)
	}
	if o.Namespace == "" {
		return nil, errors.New("the webhook's own namespace is required")
	}
	if o.CertDir == "" {
		return nil, errors.New("the certificate directory is required")
	}
	log := o.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))

	kubeVersion := ""
	if dc, err := discovery.NewDiscoveryClientForConfig(cfg); err != nil {
		log.Error(err, "no discovery client; sidecar mode auto will assume a current Kubernetes")
	} else if v, err := dc.ServerVersion(); err != nil {
		log.Error(err, "reading the API server's version; sidecar mode auto will assume a current Kubernetes")
	} else {
		kubeVersion = v.GitVersion
	}

	var policy func() *injector.Policy
	var policyFile *PolicyFile
	if o.PolicyFile == "" {
		p := injector.DefaultPolicy()
		p.KubernetesVersion = kubeVersion
		policy = StaticPolicy(p)
	} else {
		var err error
		policyFile, err = NewPolicyFile(o.PolicyFile, kubeVersion, log.WithName("policy"))
		if err != nil {
			// Not fatal: a replica that crash-loops says less, and sooner or later the file
			// is fixed. Until then /readyz fails with this reason.
			log.Error(err, "no valid cluster policy: not ready until the policy file is fixed", "file", o.PolicyFile)
		}
		policy = policyFile.Policy
	}

	mgr, err := manager.New(cfg, manager.Options{
		Scheme:                 scheme,
		Logger:                 log,
		HealthProbeBindAddress: o.HealthAddr,
		Metrics:                metricsOptions(o),
		Cache: cache.Options{
			// The webhook reads nothing but namespaces' labels and annotations (and, from a
			// cache of its own, the owners of ReplicaSets and Jobs: see newOwnerResolver).
			ByObject: map[client.Object]cache.ByObject{namespaceMetadata(): {}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}

	nsInformer, err := mgr.GetCache().GetInformer(context.Background(), namespaceMetadata(), cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching namespaces: %w", err)
	}
	handler := NewHandler(NamespaceReader(mgr.GetCache(), mgr.GetAPIReader()), policy, o.Namespace)
	handler.FailurePolicy = o.FailurePolicy
	if !o.NoOwnerLookup {
		if handler.Owners, err = newOwnerResolver(mgr, scheme); err != nil {
			return nil, err
		}
	}

	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    o.Host,
		Port:    o.Port,
		CertDir: o.CertDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			// HTTP/1.1 only, as kubebuilder's scaffolding does: the API server needs nothing
			// more, and HTTP/2 brought stream-reset floods (CVE-2023-44487, CVE-2023-39325).
			c.NextProtos = []string{"http/1.1"}
		}},
	})
	srv.Register(Path, &admission.Webhook{Handler: handler})
	srv.Register(WorkloadPath, &admission.Webhook{Handler: NewWorkloadHandler(NamespaceReader(mgr.GetCache(), mgr.GetAPIReader()), policy, o.Namespace)})

	if o.Certs == nil {
		if err := mgr.Add(srv); err != nil {
			return nil, err
		}
	} else {
		co := *o.Certs
		co.CertDir = o.CertDir
		if co.Namespace == "" {
			co.Namespace = o.Namespace
		}
		if co.Log.GetSink() == nil {
			co.Log = log.WithName("certs")
		}
		// The rotator reads one Secret by name; a cached client would list and watch them all.
		direct, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			return nil, fmt.Errorf("creating the certificates' client: %w", err)
		}
		rotator, err := certs.New(direct, co)
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(rotator); err != nil {
			return nil, err
		}
		// The server reads its certificate when it starts, so it waits for the first one.
		if err := mgr.Add(afterCertificate{rotator.CertificateWritten(), srv}); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("certificates", rotator.ReadyCheck); err != nil {
			return nil, err
		}
	}
	if policyFile != nil {
		if err := mgr.Add(policyFile); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("policy", policyFile.Ready); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddReadyzCheck("shutdown", func(*http.Request) error {
		if draining.Load() {
			return errors.New("shutting down")
		}
		return nil
	}); err != nil {
		return nil, err
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", srv.StartedChecker()); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("namespaces", func(*http.Request) error {
		if !nsInformer.HasSynced() {
			return errors.New("namespace cache not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

func metricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
		m.TLSOpts = []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.NextProtos = []string{"http/1.1"}
		}}
	}
	return m
}

// Run serves the webhook until ctx is done, then drains: /readyz fails at once, the server
// goes on answering for o.ShutdownDelay, and then stops, finishing the requests in flight.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	mgr, draining, err := newManager(cfg, o)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
		case <-runCtx.Done():
			return
		}
		draining.Store(true)
		if o.ShutdownDelay > 0 {
			o.Log.Info("shutting down: not ready, still serving", "delay", o.ShutdownDelay)
			t := time.NewTimer(o.ShutdownDelay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-runCtx.Done():
			}
		}
		stop()
	}()
	return mgr.Start(runCtx)
}

// afterCertificate starts the webhook server once the rotator has written a certificate.
type afterCertificate struct {
	written <-chan struct{}
	srv     ctrlwebhook.Server
}

func (a afterCertificate) Start(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-a.written:
	}
	return a.srv.Start(ctx)
}

func (a afterCertificate) NeedLeaderElection() bool { return false }

// newOwnerResolver returns the OwnerResolver of the webhook: a cache of the metadata of
// ReplicaSets and Jobs, trimmed to their owners, and the API server for what it has not seen.
//
// The cache is the manager's runnable but not the manager's cache, whose sync the manager waits
// for before it starts anything else: the webhook must serve, and the pods it injects be
// admitted, while it lists every ReplicaSet and Job of a large cluster, or when its RBAC is
// older than this code and may not list them (each lookup then fails, with a warning).
func newOwnerResolver(mgr manager.Manager, scheme *runtime.Scheme) (*OwnerResolver, error) {
	byObject := map[client.Object]cache.ByObject{}
	for _, obj := range ownerMetadata() {
		byObject[obj] = cache.ByObject{Transform: trimOwnerMetadata}
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: scheme, Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
		ByObject: byObject, ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the owners' cache: %w", err)
	}
	r, err := watchOwners(c, mgr.GetAPIReader())
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(backgroundCache{c}); err != nil {
		return nil, err
	}
	return r, nil
}

// watchOwners returns the OwnerResolver that reads c, synced when c's informers of the owners
// are, and live for what c has not seen; c's informers tell it of the updates that change an
// owner's controller, and of the objects they first see (OwnerResolver.Generation).
func watchOwners(c cache.Cache, live client.Reader) (*OwnerResolver, error) {
	var informers []cache.Informer
	r := NewOwnerResolver(c, func() bool {
		for _, inf := range informers {
			if !inf.HasSynced() {
				return false
			}
		}
		return true
	}, live)
	for _, obj := range ownerMetadata() {
		kind := obj.GetObjectKind().GroupVersionKind().Kind
		inf, err := c.GetInformer(context.Background(), obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("watching %s: %w", kind, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: r.added, UpdateFunc: r.controllerChanged}); err != nil {
			return nil, fmt.Errorf("watching %s: %w", kind, err)
		}
		informers = append(informers, inf)
	}
	return r, nil
}

// backgroundCache runs a cache that nothing waits for.
type backgroundCache struct{ c cache.Cache }

func (b backgroundCache) Start(ctx context.Context) error { return b.c.Start(ctx) }
func (b backgroundCache) NeedLeaderElection() bool        { return false }

func namespaceMetadata() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}

// NamespaceReader reads from cached, and from live when cached has not seen the object yet:
// a pod created right after its namespace can reach the webhook before the watch does.
func NamespaceReader(cached, live client.Reader) client.Reader {
	return fallbackReader{cached: cached, live: live}
}

type fallbackReader struct{ cached, live client.Reader }

func (r fallbackReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.cached.Get(ctx, key, obj, opts...)
	if apierrors.IsNotFound(err) {
		return r.live.Get(ctx, key, obj, opts...)
	}
	return err
}

func (r fallbackReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return r.cached.List(ctx, list, opts...)
}
