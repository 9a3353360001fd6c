package webhook

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidelog/sidelog/sidecar/config"
)

// OwnerLookupTimeout bounds the lookups of one pod's owners: a pod whose owner cannot be read in
// that time is admitted with what is known (its own controller) and a warning, never refused.
const OwnerLookupTimeout = time.Second

// intermediates are the owners whose own controller is the pod's workload: a ReplicaSet is made
// by a Deployment (or an Argo Rollout), a Job by a CronJob. The webhook reads their metadata,
// and nothing else: a StatefulSet or a DaemonSet owns its pods directly.
var intermediates = []schema.GroupVersionKind{
	appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
	batchv1.SchemeGroupVersion.WithKind("Job"),
}

// OwnerResolver finds a pod's controllers at admission: the pod's own controller reference, and
// for a ReplicaSet or a Job, that one's controller, read from the metadata of the ReplicaSet or
// Job. It reads a cache of that metadata (which lists and watches ReplicaSets and Jobs), and the
// API server when the cache has not synced or has not seen the object yet: a Deployment's
// rollout creates a ReplicaSet and, milliseconds later, its pods, which can reach the webhook
// before the watch has brought the ReplicaSet.
type OwnerResolver struct {
	cached client.Reader
	synced func() bool
	api    client.Reader
	// changes counts the cached ReplicaSets and Jobs whose own controller changed (see
	// Generation).
	changes atomic.Uint64

	mu   sync.Mutex
	live map[types.UID]types.UID // objects read from the API server, not yet seen by the cache: their controller's uid (readLive)
}

// NewOwnerResolver returns an OwnerResolver that reads cached while synced says it has synced,
// and live for what cached does not have.
func NewOwnerResolver(cached client.Reader, synced func() bool, live client.Reader) *OwnerResolver {
	return &OwnerResolver{cached: cached, synced: synced, api: live}
}

// Owners returns the controllers of pod, in namespace, nearest first: none for a pod without a
// controller; [ReplicaSet, Deployment], [Job, CronJob], [StatefulSet] and so on. What cannot be
// read within OwnerLookupTimeout is left out, and a warning says what is missing and why. A nil
// resolver returns the pod's own controller only.
func (r *OwnerResolver) Owners(ctx context.Context, namespace string, pod *corev1.Pod) (owners []config.Owner, warning string) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return []config.Owner{}, ""
	}
	owners = []config.Owner{{Kind: ref.Kind, Name: ref.Name}}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || r == nil {
		return owners, ""
	}
	gvk := gv.WithKind(ref.Kind)
	isIntermediate := false
	for _, k := range intermediates {
		// Any version: the name and the owner are the same in all of them.
		isIntermediate = isIntermediate || k.GroupKind() == gvk.GroupKind()
	}
	if !isIntermediate {
		return owners, ""
	}
	ctx, cancel := context.WithTimeout(ctx, OwnerLookupTimeout)
	defer cancel()
	obj := &metav1.PartialObjectMetadata{}
	for _, k := range intermediates {
		if k.GroupKind() == gvk.GroupKind() {
			obj.SetGroupVersionKind(k)
		}
	}
	key := client.ObjectKey{Namespace: namespace, Name: ref.Name}
	source, err := r.get(ctx, key, obj, ref.UID)
	ownerLookups.WithLabelValues(source).Inc()
	if err != nil {
		return owners, fmt.Sprintf("sidelog: the owner of %s %s could not be read (%v): its records name %s %s as their workload", ref.Kind, ref.Name, err, ref.Kind, ref.Name)
	}
	if parent := metav1.GetControllerOfNoCopy(obj); parent != nil {
		owners = append(owners, config.Owner{Kind: parent.Kind, Name: parent.Name})
	}
	return owners, ""
}

// Generation is a number that changes whenever an answer of Owners may have changed although the
// pod did not: when a cached ReplicaSet or Job changes its own controller (orphaned, or adopted
// by another Deployment: a Deployment renamed without restarting its pods is deleted with
// --cascade=orphan and created anew under its new name), when the cache first sees one that was
// read from the API server with another controller (added: a change while the watch was down),
// and when the cache syncs (a change while it listed is no update). The pods of such a ReplicaSet keep the bytes they had, so an
// answer remembered for them is given only in the generation it was computed in.
func (r *OwnerResolver) Generation() uint64 {
	if r == nil {
		return 0
	}
	g := r.changes.Load() << 1
	if r.synced() {
		g |= 1
	}
	return g
}

// controllerChanged is the cache's update handler: it counts an update that changed the object's
// controller. Others (a ReplicaSet scaled, a Job's status) change nothing Owners reads.
func (r *OwnerResolver) controllerChanged(oldObj, newObj any) {
	o, ok := oldObj.(metav1.Object)
	n, ok2 := newObj.(metav1.Object)
	if !ok || !ok2 {
		return
	}
	a, b := metav1.GetControllerOfNoCopy(o), metav1.GetControllerOfNoCopy(n)
	if (a == nil) != (b == nil) || a != nil && (a.UID != b.UID || a.Kind != b.Kind || a.Name != b.Name) {
		r.changes.Add(1)
	}
}

// Sources of an owner's metadata, the values of the result label of ownerLookups.
const (
	lookupCached = "cached" // the cache had it
	lookupLive   = "live"   // read from the API server: the cache had not synced or not seen it
	lookupFailed = "failed" // neither had it, or the API server did not answer in time
)

// get reads key into obj from the cache, and from the API server when the cache has not synced,
// has not seen the object, or has another object of that name than the uid the pod names (one
// deleted and made again).
func (r *OwnerResolver) get(ctx context.Context, key client.ObjectKey, obj *metav1.PartialObjectMetadata, uid types.UID) (string, error) {
	matches := func() bool { return uid == "" || obj.GetUID() == uid }
	if r.synced() {
		err := r.cached.Get(ctx, key, obj)
		if err == nil && matches() {
			return lookupCached, nil
		}
		if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			return lookupFailed, err
		}
	}
	if err := r.api.Get(ctx, key, obj); err != nil {
		return lookupFailed, err
	}
	if !matches() {
		return lookupFailed, fmt.Errorf("%s is uid %s, the pod names uid %s", key, obj.GetUID(), uid)
	}
	r.readLive(obj)
	return lookupLive, nil
}

// ownerMetadata returns the objects whose metadata the owner cache holds.
func ownerMetadata() []client.Object {
	var objs []client.Object
	for _, k := range intermediates {
		o := &metav1.PartialObjectMetadata{}
		o.SetGroupVersionKind(k)
		objs = append(objs, o)
	}
	return objs
}

// trimOwnerMetadata keeps of a cached ReplicaSet's or Job's metadata what OwnerResolver reads:
// its name, uid and owners. Their labels, annotations (a Job applied with kubectl carries its
// whole manifest in one) and managed fields would only take memory, for every ReplicaSet and
// Job of the cluster.
func trimOwnerMetadata(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		m.Labels, m.Annotations, m.ManagedFields, m.Finalizers = nil, nil, nil, nil
	}
	return obj, nil
}

// maxReadLive bounds what OwnerResolver remembers of the objects it read from the API server;
// past it, the generation moves instead, as if each had changed.
const maxReadLive = 4096

// readLive remembers the controller of an object read from the API server before the cache saw
// it, for added to compare with what the cache first sees.
func (r *OwnerResolver) readLive(obj metav1.Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = map[types.UID]types.UID{}
	}
	if len(r.live) >= maxReadLive {
		clear(r.live)
		r.changes.Add(1)
	}
	r.live[obj.GetUID()] = controllerUID(obj)
}

// added is the cache's add handler. An object read from the API server before the cache saw it
// can have changed its controller meanwhile without an update that controllerChanged sees: the
// watch was down, and the relist brings it as an add. Answers computed from the live read are
// then stale.
func (r *OwnerResolver) added(obj any) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	r.mu.Lock()
	ctrl, read := r.live[o.GetUID()]
	delete(r.live, o.GetUID())
	r.mu.Unlock()
	if read && ctrl != controllerUID(o) {
		r.changes.Add(1)
	}
}

func controllerUID(o metav1.Object) types.UID {
	if ref := metav1.GetControllerOfNoCopy(o); ref != nil {
		return ref.UID
	}
	return ""
}
