package webhook

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// patchOp is one operation of a JSON patch. Unlike gomodules.xyz/jsonpatch's Operation, which
// controller-runtime encodes through a MarshalJSON of its own and then checks again, its value is
// encoded once, straight from the typed field; it is left out for "remove" only.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

func op(o, path string, value any) patchOp { return patchOp{Op: o, Path: path, Value: value} }

// encodePatch encodes ops as the patch of an AdmissionResponse.
func encodePatch(ops []patchOp) ([]byte, error) { return json.Marshal(ops) }

// podPatch returns the JSON patch (RFC 6902) that makes mutated of original, where mutated is
// what injector.Inject returned for original, for the API server to apply to the JSON it sent.
// ok is false when the pods differ anywhere but in what the injector changes (then the caller
// must diff the whole documents, as admission.PatchResponseFromRaw does).
//
// It compares the typed pods field by field instead of encoding both and diffing the
// documents, which was most of an admission's cost (see the README's webhook figures). What the
// injector writes, and so all this looks at: metadata.annotations and metadata.labels (status,
// default-container, sidelog.io/injected), spec.initContainers and spec.containers (the agent;
// volume mounts of app containers), spec.volumes and the pod-level spec.resources; re-injection
// and removal take away what it added before. Lists are patched element by element, keyed by
// name (mount path for mounts), so that an element the injector did not change, and any field
// of it this webhook's API version does not know, is left as the API server sent it; a list
// whose elements were reordered or whose keys repeat is replaced whole.
//
// TestPodPatchGolden applies these patches to every golden input of the injector.
func podPatch(original, mutated *corev1.Pod) (ops []patchOp, ok bool) {
	// Paths below /metadata and /spec exist in the API server's document only if the pod has
	// them: a pod without a name, generateName or namespace, or without containers, is not one
	// the API server would send; diff it whole.
	if (original.Name == "" && original.GenerateName == "" && original.Namespace == "") || len(original.Spec.Containers) == 0 {
		return nil, false
	}
	if !restEqual(original, mutated) {
		return nil, false
	}
	ops = mapOps(ops, "/metadata/annotations", original.Annotations, mutated.Annotations)
	ops = mapOps(ops, "/metadata/labels", original.Labels, mutated.Labels)
	ops = listOps(ops, "/spec/initContainers", original.Spec.InitContainers, mutated.Spec.InitContainers, containerName, containerOps)
	ops = listOps(ops, "/spec/containers", original.Spec.Containers, mutated.Spec.Containers, containerName, containerOps)
	ops = listOps(ops, "/spec/volumes", original.Spec.Volumes, mutated.Spec.Volumes, volumeName, replaceOp[corev1.Volume])
	switch a, b := original.Spec.Resources, mutated.Spec.Resources; {
	case a == nil && b == nil, a != nil && b != nil && equal(a, b):
	case b == nil:
		ops = append(ops, op("remove", "/spec/resources", nil))
	case a == nil:
		ops = append(ops, op("add", "/spec/resources", b))
	default:
		ops = append(ops, op("replace", "/spec/resources", b))
	}
	return ops, true
}

// restEqual reports whether a and b are equal but for the fields podPatch patches. It clears
// those fields in a and b while it compares (copies of the pods would cost as much as the
// comparison), so neither may be read meanwhile.
func restEqual(a, b *corev1.Pod) bool {
	type patched struct {
		annotations, labels        map[string]string
		initContainers, containers []corev1.Container
		volumes                    []corev1.Volume
		resources                  *corev1.ResourceRequirements
	}
	take := func(p *corev1.Pod) patched {
		f := patched{p.Annotations, p.Labels, p.Spec.InitContainers, p.Spec.Containers, p.Spec.Volumes, p.Spec.Resources}
		p.Annotations, p.Labels = nil, nil
		p.Spec.InitContainers, p.Spec.Containers, p.Spec.Volumes, p.Spec.Resources = nil, nil, nil, nil
		return f
	}
	put := func(p *corev1.Pod, f patched) {
		p.Annotations, p.Labels = f.annotations, f.labels
		p.Spec.InitContainers, p.Spec.Containers, p.Spec.Volumes, p.Spec.Resources = f.initContainers, f.containers, f.volumes, f.resources
	}
	fa, fb := take(a), take(b)
	defer put(a, fa)
	defer put(b, fb)
	return equal(a, b)
}

// equal is equality.Semantic.DeepEqual, which sees a quantity by its value and an empty list or
// map as none, but asks reflect.DeepEqual first: what the injector did not touch is a deep copy,
// which that compares in a quarter of the time.
func equal[T any](a, b *T) bool {
	return reflect.DeepEqual(a, b) || equality.Semantic.DeepEqual(a, b)
}

// pointer escapes a map key or list index as one JSON-pointer token (RFC 6901).
var pointer = strings.NewReplacer("~", "~0", "/", "~1")

// mapOps appends the operations that make b of the string map a at path.
func mapOps(ops []patchOp, path string, a, b map[string]string) []patchOp {
	switch {
	case maps.Equal(a, b):
		return ops
	case len(b) == 0:
		return append(ops, op("remove", path, nil))
	case len(a) == 0:
		// "add" replaces a value that is there: an empty object or null.
		return append(ops, op("add", path, b))
	}
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[k]; !ok {
			ops = append(ops, op("remove", path+"/"+pointer.Replace(k), nil))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if v, ok := a[k]; !ok {
			ops = append(ops, op("add", path+"/"+pointer.Replace(k), b[k]))
		} else if v != b[k] {
			ops = append(ops, op("replace", path+"/"+pointer.Replace(k), b[k]))
		}
	}
	return ops
}

// listOps appends the operations that make b of the list a at path: elements of a whose key
// is not in b are removed, elements of b past those that remain are appended, and an element
// that changed is patched by elem. When what remains of a is not the start of b, key by key,
// or a key repeats, the list is replaced whole.
func listOps[T any](ops []patchOp, path string, a, b []T, key func(*T) string,
	elem func(ops []patchOp, path string, x, y *T) []patchOp) []patchOp {
	switch {
	case len(a) == 0 && len(b) == 0:
		return ops
	case len(b) == 0:
		return append(ops, op("remove", path, nil))
	case len(a) == 0:
		return append(ops, op("add", path, b))
	}
	inB := make(map[string]int, len(b))
	for i := range b {
		inB[key(&b[i])] = i
	}
	if len(inB) != len(b) {
		return append(ops, op("replace", path, b))
	}
	kept := make([]int, 0, len(a)) // indices into a of the elements that stay, in order
	seen := make(map[string]bool, len(a))
	var removed []int
	for i := range a {
		k := key(&a[i])
		if seen[k] {
			return append(ops, op("replace", path, b))
		}
		seen[k] = true
		if _, ok := inB[k]; ok {
			kept = append(kept, i)
		} else {
			removed = append(removed, i)
		}
	}
	for j, i := range kept {
		if key(&a[i]) != key(&b[j]) {
			return append(ops, op("replace", path, b))
		}
	}
	if len(kept) == 0 {
		return append(ops, op("replace", path, b))
	}
	// Removed from the last, so that the indices of those before still hold.
	for _, i := range slices.Backward(removed) {
		ops = append(ops, op("remove", path+"/"+strconv.Itoa(i), nil))
	}
	for j, i := range kept {
		if !equal(&a[i], &b[j]) {
			ops = elem(ops, path+"/"+strconv.Itoa(j), &a[i], &b[j])
		}
	}
	for j := len(kept); j < len(b); j++ {
		ops = append(ops, op("add", path+"/-", &b[j]))
	}
	return ops
}

func replaceOp[T any](ops []patchOp, path string, _, y *T) []patchOp {
	return append(ops, op("replace", path, y))
}

// containerOps patches the volume mounts of a container when nothing else of it changed (the
// mounts the injector adds to, or removes from, an app container), else replaces it.
func containerOps(ops []patchOp, path string, x, y *corev1.Container) []patchOp {
	cx, cy := *x, *y
	cx.VolumeMounts, cy.VolumeMounts = nil, nil
	cx.Env, cy.Env = nil, nil
	if !equal(&cx, &cy) {
		return replaceOp(ops, path, x, y)
	}
	// The agent's configuration of a pod injected before, completed with its workload.
	ops = listOps(ops, path+"/env", x.Env, y.Env, envName, replaceOp[corev1.EnvVar])
	return listOps(ops, path+"/volumeMounts", x.VolumeMounts, y.VolumeMounts, mountPath, replaceOp[corev1.VolumeMount])
}

func envName(e *corev1.EnvVar) string { return e.Name }

func containerName(c *corev1.Container) string { return c.Name }
func volumeName(v *corev1.Volume) string       { return v.Name }
func mountPath(m *corev1.VolumeMount) string   { return m.MountPath }
