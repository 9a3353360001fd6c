package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllertest"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/config"
)

func controllerRef(gvk schema.GroupVersionKind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: name, UID: uid, Controller: new(true)}
}

var (
	rsKind         = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
	jobKind        = batchv1.SchemeGroupVersion.WithKind("Job")
	deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")
	cronJobKind    = batchv1.SchemeGroupVersion.WithKind("CronJob")
	rolloutKind    = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout"}
)

func replicaSet(name string, uid types.UID, owner *metav1.OwnerReference) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: uid}}
	if owner != nil {
		rs.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return rs
}

func job(name string, uid types.UID, owner *metav1.OwnerReference) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: uid}}
	if owner != nil {
		j.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return j
}

func ownedPod(refs ...metav1.OwnerReference) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: "shop", OwnerReferences: refs}}
}

// TestOwners: the workload of each kind of pod, from the cache when it has the ReplicaSet or
// Job, from the API server when it has not (yet); a lookup that fails leaves the pod's own
// controller and says why.
func TestOwners(t *testing.T) {
	dep := controllerRef(deploymentKind, "web", "d-1")
	rollout := controllerRef(rolloutKind, "canary", "r-1")
	cron := controllerRef(cronJobKind, "nightly", "c-1")
	cachedObjs := []client.Object{
		replicaSet("web-5d8f", "rs-1", &dep),
		replicaSet("canary-6c7", "rs-2", &rollout),
		job("nightly-2904", "j-1", &cron),
		job("once", "j-2", nil),
		replicaSet("recreated", "rs-old", &dep), // deleted since, and made again by another owner
	}
	liveObjs := append(cachedObjs[:4:4],
		replicaSet("web-new", "rs-3", &dep), // created milliseconds before its pod: not cached yet
		replicaSet("recreated", "rs-new", &rollout),
	)
	cached := fake.NewClientBuilder().WithObjects(cachedObjs...).Build()
	live := fake.NewClientBuilder().WithObjects(liveObjs...).Build()
	broken := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("connection refused")
		},
	})
	hanging := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		Get: func(ctx context.Context, _ client.WithWatch, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
			<-ctx.Done() // an API server that does not answer: bounded by OwnerLookupTimeout
			return ctx.Err()
		},
	})
	synced := func() bool { return true }
	resolver := NewOwnerResolver(cached, synced, live)

	for _, tt := range []struct {
		name     string
		resolver *OwnerResolver
		pod      *corev1.Pod
		want     []config.Owner
		source   string // the lookup's result, "" for none
		warning  string
	}{
		{"bare pod", resolver, ownedPod(), []config.Owner{}, "", ""},
		{"not a controller", resolver, ownedPod(metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: "n"}), []config.Owner{}, "", ""},
		{"statefulset", resolver, ownedPod(controllerRef(appsv1.SchemeGroupVersion.WithKind("StatefulSet"), "db", "s-1")),
			[]config.Owner{{Kind: "StatefulSet", Name: "db"}}, "", ""},
		{"daemonset", resolver, ownedPod(controllerRef(appsv1.SchemeGroupVersion.WithKind("DaemonSet"), "node-agent", "ds-1")),
			[]config.Owner{{Kind: "DaemonSet", Name: "node-agent"}}, "", ""},
		{"deployment, cached", resolver, ownedPod(controllerRef(rsKind, "web-5d8f", "rs-1")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}, {Kind: "Deployment", Name: "web"}}, lookupCached, ""},
		{"deployment, replicaset not cached yet", resolver, ownedPod(controllerRef(rsKind, "web-new", "rs-3")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "web-new"}, {Kind: "Deployment", Name: "web"}}, lookupLive, ""},
		{"cache not synced", NewOwnerResolver(cached, func() bool { return false }, live), ownedPod(controllerRef(rsKind, "web-new", "rs-3")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "web-new"}, {Kind: "Deployment", Name: "web"}}, lookupLive, ""},
		{"cached object of another uid", resolver, ownedPod(controllerRef(rsKind, "recreated", "rs-new")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "recreated"}, {Kind: "Rollout", Name: "canary"}}, lookupLive, ""},
		{"argo rollout", resolver, ownedPod(controllerRef(rsKind, "canary-6c7", "rs-2")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "canary-6c7"}, {Kind: "Rollout", Name: "canary"}}, lookupCached, ""},
		{"cronjob", resolver, ownedPod(controllerRef(jobKind, "nightly-2904", "j-1")),
			[]config.Owner{{Kind: "Job", Name: "nightly-2904"}, {Kind: "CronJob", Name: "nightly"}}, lookupCached, ""},
		{"job of its own", resolver, ownedPod(controllerRef(jobKind, "once", "j-2")),
			[]config.Owner{{Kind: "Job", Name: "once"}}, lookupCached, ""},
		{"replicaset nowhere", resolver, ownedPod(controllerRef(rsKind, "gone", "rs-9")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "gone"}}, lookupFailed, `the owner of ReplicaSet gone could not be read`},
		{"api server refuses", NewOwnerResolver(cached, synced, broken), ownedPod(controllerRef(rsKind, "web-new", "rs-3")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "web-new"}}, lookupFailed, "connection refused"},
		{"api server silent", NewOwnerResolver(cached, synced, hanging), ownedPod(controllerRef(jobKind, "later", "j-9")),
			[]config.Owner{{Kind: "Job", Name: "later"}}, lookupFailed, "context deadline exceeded"},
		{"no resolver", nil, ownedPod(controllerRef(rsKind, "web-5d8f", "rs-1")),
			[]config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}}, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before float64
			if tt.source != "" {
				before = counterValue(t, ownerLookups.WithLabelValues(tt.source))
			}
			got, warning := tt.resolver.Owners(context.Background(), "shop", tt.pod)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("owners (-want +got):\n%s", diff)
			}
			if tt.warning == "" && warning != "" || !strings.Contains(warning, tt.warning) {
				t.Errorf("warning %q, want one containing %q", warning, tt.warning)
			}
			if tt.source != "" {
				if got := counterValue(t, ownerLookups.WithLabelValues(tt.source)); got != before+1 {
					t.Errorf("owner_lookups_total{result=%s} = %v, want %v", tt.source, got, before+1)
				}
			}
		})
	}
}

// TestHandleWorkload: an injected pod's agent is told its workload and its namespace's labels;
// a lookup that fails admits the pod injected all the same, with a warning.
func TestHandleWorkload(t *testing.T) {
	dep := controllerRef(deploymentKind, "web", "d-1")
	live := fake.NewClientBuilder().WithObjects(namespace("shop", true, nil), replicaSet("web-5d8f", "rs-1", &dep)).Build()
	broken := interceptor.NewClient(live, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if key.Namespace != "" {
				return errors.New("connection refused")
			}
			return c.Get(ctx, key, obj, opts...)
		},
	})
	pod := appPod(map[string]string{injector.AnnotationTail: "/var/log/app/*.log", injector.AnnotationUpstream: "fluentd:24224"})
	pod.OwnerReferences = []metav1.OwnerReference{controllerRef(rsKind, "web-5d8f", "rs-1")}
	wantLabels := map[string]string{corev1.LabelMetadataName: "shop", NamespaceLabel: NamespaceLabelEnabled}
	for _, tt := range []struct {
		name       string
		reader     client.Reader
		wantOwners []config.Owner
		warning    string
	}{
		{"resolved", live, []config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}, {Kind: "Deployment", Name: "web"}}, ""},
		{"lookup fails", broken, []config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}}, "could not be read (connection refused)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(live, StaticPolicy(injector.DefaultPolicy()), ownNS)
			h.Owners = NewOwnerResolver(tt.reader, func() bool { return false }, tt.reader)
			req := podRequest(t, "shop", admissionv1.Create, pod)
			resp := h.Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp.Result)
			}
			cfg := agentConfig(t, applied(t, req, resp))
			if cfg == nil {
				t.Fatal("not injected")
			}
			if diff := cmp.Diff(tt.wantOwners, cfg.Owners); diff != "" {
				t.Errorf("owners (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantLabels, cfg.NamespaceLabels); diff != "" {
				t.Errorf("namespace labels (-want +got):\n%s", diff)
			}
			// A lookup that failed may succeed for the next pod of the same ReplicaSet: its
			// answer is not remembered.
			if n := len(h.answers.entries); n != map[bool]int{true: 1, false: 0}[tt.warning == ""] {
				t.Errorf("%d answers remembered after a lookup that %s", n, map[bool]string{true: "succeeded", false: "failed"}[tt.warning == ""])
			}
			found := tt.warning == ""
			for _, w := range resp.Warnings {
				found = found || strings.Contains(w, tt.warning)
			}
			if !found {
				t.Errorf("warnings %q, want one containing %q", resp.Warnings, tt.warning)
			}
		})
	}
}

// TestHandleWorkloadTooManyLabels: a pod injected before (sidelog inject) in a namespace whose
// labels would outgrow the agent's environment variable is told its workload all the same, with
// a warning that its records go without the namespace's labels.
func TestHandleWorkloadTooManyLabels(t *testing.T) {
	ns := namespace("shop", true, nil)
	for i := range 1200 {
		ns.Labels[fmt.Sprintf("example.com/label-%04d", i)] = strings.Repeat("v", 63)
	}
	dep := controllerRef(deploymentKind, "web", "d-1")
	c := fake.NewClientBuilder().WithObjects(ns, replicaSet("web-5d8f", "rs-1", &dep)).Build()
	h := NewHandler(c, StaticPolicy(injector.DefaultPolicy()), ownNS)
	h.Owners = NewOwnerResolver(c, func() bool { return true }, c)
	template, _, err := injector.Inject(appPod(map[string]string{
		injector.AnnotationTail: "/var/log/app/*.log", injector.AnnotationUpstream: "fluentd:24224",
	}), nil, injector.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	template.OwnerReferences = []metav1.OwnerReference{controllerRef(rsKind, "web-5d8f", "rs-1")}
	req := podRequest(t, "shop", admissionv1.Create, template)
	resp := h.Handle(context.Background(), req)
	if !resp.Allowed {
		t.Fatalf("refused: %+v", resp.Result)
	}
	cfg := agentConfig(t, applied(t, req, resp))
	want := []config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}, {Kind: "Deployment", Name: "web"}}
	if diff := cmp.Diff(want, cfg.Owners); diff != "" {
		t.Errorf("owners (-want +got):\n%s", diff)
	}
	if cfg.NamespaceLabels != nil {
		t.Errorf("%d namespace labels, want none", len(cfg.NamespaceLabels))
	}
	if !slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.Contains(w, "1202 labels") }) {
		t.Errorf("warnings %q, want one that says the namespace's labels are left out", resp.Warnings)
	}
}

// replicaSetPod is a pod of ReplicaSet web-5d8f (uid rs-1) as the controller creates it.
func replicaSetPod() *corev1.Pod {
	pod := appPod(map[string]string{injector.AnnotationTail: "/var/log/app/*.log", injector.AnnotationUpstream: "fluentd:24224"})
	pod.Name, pod.GenerateName = "", "web-5d8f-"
	pod.OwnerReferences = []metav1.OwnerReference{controllerRef(rsKind, "web-5d8f", "rs-1")}
	return pod
}

// admittedWorkload admits pod in namespace shop through h and returns the workload its agent
// is told.
func admittedWorkload(t *testing.T, h *Handler, pod *corev1.Pod) config.Owner {
	t.Helper()
	req := podRequest(t, "shop", admissionv1.Create, pod)
	resp := h.Handle(context.Background(), req)
	if !resp.Allowed {
		t.Fatalf("refused: %+v", resp.Result)
	}
	w, _ := config.Workload(agentConfig(t, applied(t, req, resp)).Owners)
	return w
}

// TestHandleAdoption: a ReplicaSet orphaned and adopted by another Deployment (a Deployment
// renamed without restarting its pods) sends pods byte for byte the same as before; the next one
// names the new Deployment, not the one of the answer remembered before the cache saw the change.
func TestHandleAdoption(t *testing.T) {
	ctx := context.Background()
	dep := controllerRef(deploymentKind, "web", "d-1")
	rs := replicaSet("web-5d8f", "rs-1", &dep)
	c := fake.NewClientBuilder().WithObjects(namespace("shop", true, nil), rs).Build()
	h := NewHandler(c, StaticPolicy(injector.DefaultPolicy()), ownNS)
	h.Owners = NewOwnerResolver(c, func() bool { return true }, c)
	workload := func() config.Owner { return admittedWorkload(t, h, replicaSetPod()) }
	if w := workload(); w.Name != "web" {
		t.Fatalf("workload %v, want Deployment web", w)
	}
	for _, step := range []struct {
		name  string
		owner *metav1.OwnerReference
		want  config.Owner
	}{
		{"orphaned", nil, config.Owner{Kind: "ReplicaSet", Name: "web-5d8f"}},
		{"adopted", new(controllerRef(deploymentKind, "shop-web", "d-2")), config.Owner{Kind: "Deployment", Name: "shop-web"}},
		{"resynced, no change", new(controllerRef(deploymentKind, "shop-web", "d-2")), config.Owner{Kind: "Deployment", Name: "shop-web"}},
	} {
		old := rs.DeepCopy()
		rs.OwnerReferences = nil
		if step.owner != nil {
			rs.OwnerReferences = []metav1.OwnerReference{*step.owner}
		}
		if err := c.Update(ctx, rs); err != nil {
			t.Fatal(err)
		}
		// As the cache's informer tells the resolver (newOwnerResolver).
		gen := h.Owners.Generation()
		h.Owners.controllerChanged(old, rs)
		if changed := h.Owners.Generation() != gen; changed != (step.name != "resynced, no change") {
			t.Errorf("%s: generation changed %v", step.name, changed)
		}
		if w := workload(); w != step.want {
			t.Errorf("%s: workload %v, want %v", step.name, w, step.want)
		}
	}
}

// TestWatchOwners: the owners' cache's informers move the resolver's generation on an update
// that changes a ReplicaSet's or Job's controller, and when they have synced; not on others.
func TestWatchOwners(t *testing.T) {
	// The fake informers key by the object's type: both owners' metadata share one.
	s := runtime.NewScheme()
	for _, obj := range ownerMetadata() {
		s.AddKnownTypeWithName(obj.GetObjectKind().GroupVersionKind(), &metav1.PartialObjectMetadata{})
	}
	informers := &informertest.FakeInformers{Scheme: s}
	r, err := watchOwners(informers, fake.NewClientBuilder().Build())
	if err != nil {
		t.Fatal(err)
	}
	var fakes []*controllertest.FakeInformer
	for _, obj := range ownerMetadata() {
		inf, err := informers.FakeInformerFor(context.Background(), obj)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(fakes, inf) {
			fakes = append(fakes, inf)
		}
	}
	dep, other := controllerRef(deploymentKind, "web", "d-1"), controllerRef(deploymentKind, "shop-web", "d-2")
	scaled := replicaSet("web-5d8f", "rs-1", &dep)
	scaled.Spec.Replicas = new(int32(3))
	for _, tt := range []struct {
		name     string
		old, new metav1.Object
		changes  bool
	}{
		{"scaled", replicaSet("web-5d8f", "rs-1", &dep), scaled, false},
		{"resynced", replicaSet("web-5d8f", "rs-1", &dep), replicaSet("web-5d8f", "rs-1", &dep), false},
		{"orphaned", replicaSet("web-5d8f", "rs-1", &dep), replicaSet("web-5d8f", "rs-1", nil), true},
		{"adopted", replicaSet("web-5d8f", "rs-1", nil), replicaSet("web-5d8f", "rs-1", &other), true},
		{"another owner of the same name", job("nightly-1", "j-1", &dep), job("nightly-1", "j-1", new(controllerRef(deploymentKind, "web", "d-3"))), true},
	} {
		for i, inf := range fakes {
			before := r.Generation()
			inf.Update(tt.old, tt.new)
			if changed := r.Generation() != before; changed != tt.changes {
				t.Errorf("%s, informer %d: generation changed %v, want %v", tt.name, i, changed, tt.changes)
			}
		}
	}
	// The fake informers are synced from the start; an unsynced cache is another generation.
	synced := r.Generation()
	r.synced = func() bool { return false }
	if r.Generation() == synced {
		t.Error("the generation is the same before and after the cache synced")
	}
}

// TestHandleNoLookupWithoutAgent: a pod that will not have the agent (it or its namespace opts
// out, or it asks for no file) is answered without looking its owners up, as before the
// injector took the workload: such a pod must never wait for the API server, nor pay a lookup
// that the webhook's RBAC may forbid.
func TestHandleNoLookupWithoutAgent(t *testing.T) {
	dep := controllerRef(deploymentKind, "web", "d-1")
	optedOut := namespace("quiet", true, map[string]string{injector.AnnotationInject: "false"})
	c := fake.NewClientBuilder().WithObjects(namespace("shop", true, nil), optedOut, replicaSet("web-5d8f", "rs-1", &dep)).Build()
	lookups := 0
	counting := interceptor.NewClient(c, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			lookups++
			return c.Get(ctx, key, obj, opts...)
		},
	})
	tail := injector.AnnotationTail + ".app"
	for _, tt := range []struct {
		name, namespace string
		annotations     map[string]string
		lookup          bool
	}{
		{"injected", "shop", map[string]string{tail: "/var/log/app/*.log", injector.AnnotationUpstream: "fluentd:24224"}, true},
		{"pod opts out", "shop", map[string]string{tail: "/var/log/app/*.log", injector.AnnotationInject: "false"}, false},
		{"namespace opts out", "quiet", map[string]string{tail: "/var/log/app/*.log"}, false},
		{"no tail annotation", "shop", map[string]string{injector.AnnotationInject: "true"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(c, StaticPolicy(injector.DefaultPolicy()), ownNS)
			h.Owners = NewOwnerResolver(counting, func() bool { return true }, counting)
			pod := appPod(tt.annotations)
			pod.OwnerReferences = []metav1.OwnerReference{controllerRef(rsKind, "web-5d8f", "rs-1")}
			lookups = 0
			resp := h.Handle(context.Background(), podRequest(t, tt.namespace, admissionv1.Create, pod))
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp.Result)
			}
			if (lookups > 0) != tt.lookup {
				t.Errorf("%d owner lookups, want some: %v", lookups, tt.lookup)
			}
		})
	}
}

// TestHandleAdoptionUnseen: a ReplicaSet read from the API server before the cache saw it, then
// adopted by another Deployment while the watch was down (the relist brings it as an add, with
// its new controller, and no update): the next pod names the new Deployment, not the one of the
// answer remembered from the live read.
func TestHandleAdoptionUnseen(t *testing.T) {
	ctx := context.Background()
	dep := controllerRef(deploymentKind, "web", "d-1")
	rs := replicaSet("web-5d8f", "rs-1", &dep)
	live := fake.NewClientBuilder().WithObjects(namespace("shop", true, nil), rs).Build()
	cached := fake.NewClientBuilder().Build()
	h := NewHandler(live, StaticPolicy(injector.DefaultPolicy()), ownNS)
	h.Owners = NewOwnerResolver(cached, func() bool { return true }, live)
	workload := func() config.Owner { return admittedWorkload(t, h, replicaSetPod()) }
	if w := workload(); w.Name != "web" {
		t.Fatalf("workload %v, want Deployment web", w)
	}
	rs.OwnerReferences = []metav1.OwnerReference{controllerRef(deploymentKind, "shop-web", "d-2")}
	if err := live.Update(ctx, rs); err != nil {
		t.Fatal(err)
	}
	adopted := rs.DeepCopy()
	adopted.ResourceVersion = ""
	if err := cached.Create(ctx, adopted); err != nil {
		t.Fatal(err)
	}
	h.Owners.added(adopted) // as the cache's informer tells the resolver (newOwnerResolver)
	if w := workload(); w.Name != "shop-web" {
		t.Errorf("workload %v after the cache first saw the ReplicaSet adopted, want Deployment shop-web", w)
	}
	// The cache's first sight of a ReplicaSet that did not change moves nothing.
	gen := h.Owners.Generation()
	other := replicaSet("api-7c9d", "rs-2", &dep)
	h.Owners.added(other)
	if h.Owners.Generation() != gen {
		t.Error("the generation moved for a ReplicaSet never read live")
	}
}
