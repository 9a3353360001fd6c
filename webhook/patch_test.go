package webhook

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/injector"
)

// samePod compares pods as their JSON does: quantities by value, and an empty list or map as
// none (both are left out of the JSON).
var samePod = []cmp.Option{cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }), cmpopts.EquateEmpty()}

// applyPodPatch applies podPatch's operations for original (decoded from raw) and mutated to
// raw with evanphx/json-patch, the implementation the API server uses, and fails unless the
// result is mutated.
func applyPodPatch(t *testing.T, raw []byte, original, mutated *corev1.Pod) {
	t.Helper()
	ops, ok := podPatch(original, mutated)
	if !ok {
		t.Fatal("podPatch fell back to the whole-document diff for a pod the injector changed")
	}
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(b)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", b, err)
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mutated, got, samePod...); diff != "" {
		t.Errorf("patched pod (-injector's +patched):\n%s\npatch: %s", diff, b)
	}
}

// goldenCase is an input of the injector's golden tests (injector/testdata/inject).
type goldenCase struct {
	Namespace map[string]string `json:"namespace"`
	Policy    json.RawMessage   `json:"policy"`
	Pod       json.RawMessage   `json:"pod"`
}

// TestPodPatchGolden checks, for every input of the injector's golden tests, that the patch
// podPatch builds from what Inject changed, applied to the input pod's JSON, gives Inject's pod:
// injection, re-injection and removal as the inputs have them, then removal (an opt-out) and
// re-injection (a namespace default changed) of every pod injected.
func TestPodPatchGolden(t *testing.T) {
	files, err := filepath.Glob("../injector/testdata/inject/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	decoder := admission.NewDecoder(scheme.Scheme)
	decode := func(t *testing.T, raw []byte) *corev1.Pod {
		t.Helper()
		pod := &corev1.Pod{}
		if err := decoder.DecodeRaw(runtime.RawExtension{Raw: raw}, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	}
	// changed runs Inject on raw and checks the patch when it changed the pod.
	changed := func(t *testing.T, raw []byte, ns map[string]string, p *injector.Policy) (*corev1.Pod, bool) {
		t.Helper()
		pod := decode(t, raw)
		mutated, out, err := injector.Inject(pod, ns, p)
		if err != nil || !out.Changed {
			return nil, false
		}
		applyPodPatch(t, raw, pod, mutated)
		return mutated, true
	}
	checked := 0
	for _, file := range files {
		if strings.HasSuffix(file, ".golden.yaml") {
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var c goldenCase
			if err := yaml.Unmarshal(data, &c); err != nil {
				t.Fatal(err)
			}
			p := injector.DefaultPolicy()
			if len(c.Policy) > 0 {
				if p, err = injector.ParsePolicy(c.Policy); err != nil {
					t.Fatal(err)
				}
			}
			injected, ok := changed(t, c.Pod, c.Namespace, p)
			if !ok {
				return // refused, or left as it was: no patch
			}
			checked++
			if _, ok := injected.Annotations[injector.AnnotationStatus]; !ok {
				return // the input had the agent removed
			}
			optedOut := injected.DeepCopy()
			optedOut.Annotations[injector.AnnotationInject] = "false"
			raw, err := json.Marshal(optedOut)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := changed(t, raw, c.Namespace, p); !ok {
				t.Error("opting the injected pod out changed nothing")
			}
			if raw, err = json.Marshal(injected); err != nil {
				t.Fatal(err)
			}
			ns := maps.Clone(c.Namespace)
			if ns == nil {
				ns = map[string]string{}
			}
			ns[injector.AnnotationMultiline] = `^\d{4}-`
			changed(t, raw, ns, p) // may be refused with the new default
		})
	}
	if checked < 20 {
		t.Errorf("only %d golden inputs were changed by the injector, want at least 20", checked)
	}
}

// TestPodPatchShapes checks the patches for changes the golden inputs do not make: keys that
// need escaping, lists reordered or with repeated keys, maps and lists emptied or created.
func TestPodPatchShapes(t *testing.T) {
	base := func() *corev1.Pod {
		pod := appPod(map[string]string{"a/b~c": "1", "keep": "x"})
		pod.Namespace = "shop"
		pod.Labels = map[string]string{"app": "web"}
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "side", Image: "side:1"})
		return pod
	}
	for _, tt := range []struct {
		name   string
		mutate func(*corev1.Pod)
	}{
		{"nothing", func(*corev1.Pod) {}},
		{"escaped keys", func(p *corev1.Pod) {
			p.Annotations["a/b~c"] = "2"
			p.Annotations["x/y"] = "new"
			delete(p.Annotations, "keep")
		}},
		{"maps emptied", func(p *corev1.Pod) { p.Annotations, p.Labels = nil, nil }},
		{"containers reordered", func(p *corev1.Pod) {
			p.Spec.Containers[0], p.Spec.Containers[1] = p.Spec.Containers[1], p.Spec.Containers[0]
		}},
		{"first container removed, one added", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers[1:], corev1.Container{Name: "new"})
		}},
		{"first container removed, the next changed", func(p *corev1.Pod) {
			p.Spec.Containers = p.Spec.Containers[1:]
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: "/y"}}
		}},
		{"every container replaced", func(p *corev1.Pod) { p.Spec.Containers = []corev1.Container{{Name: "other"}} }},
		{"a container's image", func(p *corev1.Pod) { p.Spec.Containers[1].Image = "side:2" }},
		{"mounts added and removed", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "x", MountPath: "/x"}}
			p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: "/y"}}
		}},
		{"repeated key", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, p.Spec.Volumes[0], corev1.Volume{Name: "z"})
		}},
		{"volumes removed", func(p *corev1.Pod) { p.Spec.Volumes = nil }},
		{"init containers and resources added", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
			p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			original := base()
			raw, err := json.Marshal(original)
			if err != nil {
				t.Fatal(err)
			}
			mutated := original.DeepCopy()
			tt.mutate(mutated)
			applyPodPatch(t, raw, original, mutated)
		})
	}
}

// TestPodPatchFallsBack checks that a change outside the fields podPatch patches is not lost:
// podPatch declines and the handler's answer diffs the whole documents.
func TestPodPatchFallsBack(t *testing.T) {
	original := appPod(map[string]string{"a": "1"})
	original.Namespace = "shop"
	mutated := original.DeepCopy()
	mutated.Annotations["a"] = "2"
	mutated.Spec.NodeName = "node-1"
	if _, ok := podPatch(original, mutated); ok {
		t.Fatal("podPatch patched a pod whose spec.nodeName changed")
	}
	req := podRequest(t, "shop", "CREATE", original)
	got := applied(t, req, patchResponse(req.Object.Raw, original, mutated))
	if diff := cmp.Diff(mutated, got, samePod...); diff != "" {
		t.Errorf("patched pod (-want +got):\n%s", diff)
	}
}

// TestPodPatchKeepsUnknownFields checks that fields this webhook's k8s.io/api does not know (a
// newer API server's) survive injection where the injector did not change the element they
// are in; the whole-document diff removed them everywhere, as the mutated pod, encoded from
// its typed form, does not have them.
func TestPodPatchKeepsUnknownFields(t *testing.T) {
	pod := appPod(map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"})
	pod.Namespace = "shop"
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	spec := doc["spec"].(map[string]any)
	spec["futurePodField"] = "x"
	spec["containers"].([]any)[0].(map[string]any)["futureContainerField"] = "y"
	if raw, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	req := podRequest(t, "shop", "CREATE", pod)
	req.Object.Raw = raw
	namespaces := cachedNamespaces{"shop": namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"})}
	resp := NewHandler(namespaces, StaticPolicy(injector.DefaultPolicy()), ownNS).Handle(context.Background(), req)
	if !resp.Allowed || !patched(resp) {
		t.Fatalf("not patched: %+v", resp.Result)
	}
	b := resp.Patch
	if len(resp.Patches) > 0 {
		if b, err = json.Marshal(resp.Patches); err != nil {
			t.Fatal(err)
		}
	}
	patch, err := jsonpatch.DecodePatch(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"futurePodField":"x"`, `"futureContainerField":"y"`, `"name":"sidelog-agent"`} {
		if !strings.Contains(string(out), field) {
			t.Errorf("patched pod has no %s: %s", field, out)
		}
	}
}
