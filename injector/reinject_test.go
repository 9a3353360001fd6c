package injector

import (
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/api/resource"
)

// quantities compares resource quantities by value: 1Gi+32Mi-32Mi is 1Gi however written.
var quantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// TestOptOutRemovesTheAgent injects every golden input, then opts the result out: what comes
// back must be the input as it was, with only the opt-out annotation added.
func TestOptOutRemovesTheAgent(t *testing.T) {
	for _, file := range goldenInputs(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c, p := loadCase(t, file)
			if _, ok := c.Pod.Annotations[AnnotationStatus]; ok {
				t.Skip("injected before: removal gives a pod without the agent, not this input")
			}
			injected, o, err := Inject(&c.Pod, c.Namespace, p)
			if err != nil || !o.Changed || !o.Injected {
				t.Skipf("not injected now: %v %+v", err, o)
			}
			optedOut := injected.DeepCopy()
			optedOut.Annotations[AnnotationInject] = "false"
			got, o, err := Inject(optedOut, c.Namespace, p)
			if err != nil {
				t.Fatal(err)
			}
			if !o.Changed || o.Injected || len(o.Warnings) != 1 || !strings.Contains(o.Warnings[0], "removed the agent") {
				t.Errorf("outcome %+v, want changed, not injected, and a warning saying the agent was removed", o)
			}
			want := c.Pod.DeepCopy()
			if want.Annotations == nil {
				want.Annotations = map[string]string{}
			}
			want.Annotations[AnnotationInject] = "false"
			if diff := cmp.Diff(want, got, quantities, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("opted out (-input +got):\n%s", diff)
			}
			again, o, err := Inject(got, c.Namespace, p)
			if err != nil || o.Changed || cmp.Diff(got, again) != "" {
				t.Errorf("a second opt-out changed something: %v %+v", err, o)
			}
		})
	}
}

// TestReinjectIsInjection injects every golden input, then changes its namespace's defaults:
// the pod must come out exactly as if it had been injected with the new defaults in the first
// place, and a further Inject must change nothing.
func TestReinjectIsInjection(t *testing.T) {
	for _, file := range goldenInputs(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c, p := loadCase(t, file)
			injected, o, err := Inject(&c.Pod, c.Namespace, p)
			if err != nil || !o.Changed || !o.Injected {
				t.Skipf("not injected now: %v %+v", err, o)
			}
			ns := maps.Clone(c.Namespace)
			if ns == nil {
				ns = map[string]string{}
			}
			ns[AnnotationMultiline] = `^\d{4}-`
			direct, _, errDirect := Inject(&c.Pod, ns, p)
			anew, o, errAnew := Inject(injected, ns, p)
			if (errDirect == nil) != (errAnew == nil) {
				t.Fatalf("re-injection error %v, direct injection error %v", errAnew, errDirect)
			}
			if errAnew != nil {
				t.Skipf("refused with the new defaults: %v", errAnew)
			}
			if !o.Changed || !o.Injected || len(o.Warnings) == 0 || !strings.Contains(o.Warnings[0], "injected anew") {
				t.Errorf("outcome %+v, want changed, injected, and a first warning saying it was injected anew", o)
			}
			if diff := cmp.Diff(direct, anew, quantities); diff != "" {
				t.Errorf("re-injected pod (-injected directly +re-injected):\n%s", diff)
			}
			again, o, err := Inject(anew, ns, p)
			if err != nil || o.Changed || o.Reason != "already injected" || cmp.Diff(anew, again) != "" {
				t.Errorf("Inject of the re-injected pod: %v %+v, want it unchanged", err, o)
			}
		})
	}
}

// TestDigest checks what the digest depends on.
func TestDigest(t *testing.T) {
	pod := map[string]string{AnnotationTail: "/var/log/*.log", "example.com/team": "a"}
	base := inputDigest(pod, nil, DefaultPolicy())
	old := DefaultPolicy()
	old.KubernetesVersion = "v1.28.3"
	newer := DefaultPolicy()
	newer.KubernetesVersion = "v1.31.0"
	other := DefaultPolicy()
	other.MaxGlobs = 3
	for _, tt := range []struct {
		name      string
		pod, ns   map[string]string
		policy    *Policy
		different bool
	}{
		{"other annotations", map[string]string{AnnotationTail: "/var/log/*.log", "example.com/team": "b"}, nil, DefaultPolicy(), false},
		{"the status", map[string]string{AnnotationTail: "/var/log/*.log", AnnotationStatus: "{}"}, nil, DefaultPolicy(), false},
		{"other namespace annotations", pod, map[string]string{"example.com/owner": "x"}, DefaultPolicy(), false},
		{"a nil policy is the default", pod, nil, nil, false},
		{"a version that runs native sidecars", pod, nil, newer, false},
		{"the tail globs", map[string]string{AnnotationTail: "/var/log/*.txt"}, nil, DefaultPolicy(), true},
		{"a pod option", map[string]string{AnnotationTail: "/var/log/*.log", AnnotationParser: "json"}, nil, DefaultPolicy(), true},
		{"a namespace default", pod, map[string]string{AnnotationUpstream: "f:1"}, DefaultPolicy(), true},
		{"the policy", pod, nil, other, true},
		{"a version without native sidecars", pod, nil, old, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := inputDigest(tt.pod, tt.ns, tt.policy); (got != base) != tt.different {
				t.Errorf("digest %s, base %s: want different = %v", got, base, tt.different)
			}
		})
	}
}
