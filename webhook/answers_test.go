package webhook

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
)

// TestAnswersFollowInputs admits the same pod again and again while what its answer depends on
// changes: a remembered answer must be the fresh one, byte for byte, and never one computed
// from other inputs.
func TestAnswersFollowInputs(t *testing.T) {
	ctx := context.Background()
	namespaces := cachedNamespaces{"shop": namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"})}
	policy := injector.DefaultPolicy()
	current := policy
	h := NewHandler(namespaces, func() *injector.Policy { return current }, ownNS)
	fresh := func(req admission.Request) admission.Response {
		t.Helper()
		return NewHandler(namespaces, func() *injector.Policy { return current }, ownNS).Handle(ctx, req)
	}
	good := podRequest(t, "shop", admissionv1.Create, appPod(map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"}))
	bad := podRequest(t, "shop", admissionv1.Create, appPod(map[string]string{injector.AnnotationTail + ".nosuch": "/var/log/app/*.log"}))

	check := func(step string, req admission.Request, wantUpstream string) {
		t.Helper()
		want := fresh(req)
		for i := range 3 {
			got := h.Handle(ctx, req)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s, answer %d differs from a fresh handler's (-fresh +got):\n%s", step, i, diff)
			}
			// What the admission package and the server do with an answer must not reach
			// the next one.
			if err := got.Complete(req); err != nil {
				t.Fatal(err)
			}
			got.Result.Message = "changed by the caller"
			for i := range got.Warnings {
				got.Warnings[i] = "changed by the caller"
			}
		}
		if wantUpstream != "" {
			if servers := agentConfig(t, applied(t, req, want)).Upstream.Servers; !slices.Contains(servers, wantUpstream) {
				t.Fatalf("%s: the agent ships to %v, want %s", step, servers, wantUpstream)
			}
		}
	}
	check("first pod", good, "fluentd.logging:24224")
	check("refused pod", bad, "")
	if n := len(h.answers.entries); n != 2 {
		t.Fatalf("%d answers remembered, want 2 (the injected and the refused pod)", n)
	}

	namespaces["shop"] = namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluent-bit.logging:24224"})
	check("namespace defaults changed", good, "fluent-bit.logging:24224")
	relabelled := namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluent-bit.logging:24224"})
	relabelled.Labels["team"] = "payments"
	namespaces["shop"] = relabelled
	check("namespace labels changed", good, "fluent-bit.logging:24224")
	if got := agentConfig(t, applied(t, good, h.Handle(ctx, good))).NamespaceLabels["team"]; got != "payments" {
		t.Fatalf("after the namespace was relabelled the agent is told team %q", got)
	}

	current = injector.DefaultPolicy()
	current.AgentImage = "example.com/agent:2"
	check("policy reloaded", good, "fluent-bit.logging:24224")
	if got := agentImage(applied(t, good, h.Handle(ctx, good))); got != "example.com/agent:2" {
		t.Fatalf("after the policy changed the agent's image is %q", got)
	}

	other := podRequest(t, "other", admissionv1.Create, appPod(map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"}))
	namespaces["other"] = namespace("other", true, nil)
	check("same pod, another namespace", other, "")
	namespaces["other"] = namespace("other", false, nil)
	if resp := h.Handle(ctx, other); patched(resp) {
		t.Fatal("a namespace that opted out still gets the agent from a remembered answer")
	}
}

// agentImage is the image of pod's agent container, or "" if it has none.
func agentImage(pod *corev1.Pod) string {
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == injector.AgentContainer {
			return c.Image
		}
	}
	return ""
}

// TestAnswersBound fills the cache past its bound: it keeps the newest answers within it,
// drops the oldest, and never keeps an answer larger than the bound.
func TestAnswersBound(t *testing.T) {
	const max = 64 << 10
	c := newAnswers(max)
	p := injector.DefaultPolicy()
	raw := func(i int) []byte {
		return []byte(`{"metadata":{"name":"p` + strconv.Itoa(i) + `"},` + strings.Repeat(" ", 2000) + `}`)
	}
	resp := admission.Allowed("ok")
	for i := range 200 {
		c.put(raw(i), "ns", nil, nil, p, 0, resp, OutcomeSkipped)
		if c.bytes > max {
			t.Fatalf("after %d answers the cache holds %d bytes, above its bound %d", i+1, c.bytes, max)
		}
	}
	if _, _, ok := c.get(raw(199), "ns", nil, nil, p, 0); !ok {
		t.Fatal("the newest answer was dropped")
	}
	if _, _, ok := c.get(raw(0), "ns", nil, nil, p, 0); ok {
		t.Fatal("the oldest answer is still there past the bound")
	}
	if len(c.entries) != len(c.order) || len(c.entries) < 20 {
		t.Fatalf("%d entries, %d in order: want the same number, and most of what fits", len(c.entries), len(c.order))
	}
	huge := []byte(`{"metadata":{"name":"huge"},` + strings.Repeat(" ", answerMaxBytes) + `}`)
	c.put(huge, "ns", nil, nil, p, 0, resp, OutcomeSkipped)
	if _, _, ok := c.get(huge, "ns", nil, nil, p, 0); ok {
		t.Fatal("a pod larger than answerMaxBytes was remembered")
	}
	if _, _, ok := c.get(raw(199), "ns", map[string]string{"a": "b"}, nil, p, 0); ok {
		t.Fatal("an answer was given for other namespace defaults")
	}
	if _, _, ok := c.get(raw(199), "ns", nil, map[string]string{"team": "a"}, p, 0); ok {
		t.Fatal("an answer was given for other namespace labels")
	}
	if _, _, ok := c.get(raw(199), "ns", nil, nil, injector.DefaultPolicy(), 0); ok {
		t.Fatal("an answer was given for another policy")
	}
	if _, _, ok := c.get(raw(199), "ns", nil, nil, p, 2); ok {
		t.Fatal("an answer was given in another generation of the owners' cache")
	}
}

// TestAnswersIgnoreManagedFields: the pods a ReplicaSet makes seconds apart differ only in the
// time of their managedFields; the second is answered from the first's answer, which is the
// answer a fresh handler gives it. A pod that differs in anything else is not.
func TestAnswersIgnoreManagedFields(t *testing.T) {
	ctx := context.Background()
	namespaces := cachedNamespaces{"shop": namespace("shop", true, nil)}
	h := NewHandler(namespaces, StaticPolicy(injector.DefaultPolicy()), ownNS)
	podAt := func(second int, annotations map[string]string) admission.Request {
		pod := appPod(annotations)
		pod.Name, pod.GenerateName = "", "web-5d8f-"
		pod.ManagedFields = []metav1.ManagedFieldsEntry{{
			Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
			Time: &metav1.Time{Time: time.Date(2026, 11, 30, 18, 0, second, 0, time.UTC)}, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{}}}`)},
		}}
		return podRequest(t, "shop", admissionv1.Create, pod)
	}
	tail := map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"}
	first, second := podAt(1, tail), podAt(2, tail)
	if string(first.Object.Raw) == string(second.Object.Raw) {
		t.Fatal("the two pods are the same bytes: the test shows nothing")
	}
	h.Handle(ctx, first)
	got := h.Handle(ctx, second)
	want := NewHandler(namespaces, StaticPolicy(injector.DefaultPolicy()), ownNS).Handle(ctx, second)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the second pod's answer differs from a fresh handler's (-fresh +got):\n%s", diff)
	}
	if n := len(h.answers.entries); n != 1 {
		t.Errorf("%d answers remembered after two pods that differ in managedFields only, want 1", n)
	}
	h.Handle(ctx, podAt(1, map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.txt"}))
	if n := len(h.answers.entries); n != 2 {
		t.Errorf("%d answers remembered after a pod with other annotations, want 2", n)
	}
}

// TestAnswersConcurrent: requests for the same pods racing each other (a ReplicaSet scaled up)
// get and put remembered answers at once; each gets the fresh answer, and what a caller does to
// its answer reaches no other (run with -race).
func TestAnswersConcurrent(t *testing.T) {
	ctx := context.Background()
	namespaces := cachedNamespaces{"shop": namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"})}
	policy := StaticPolicy(injector.DefaultPolicy())
	h := NewHandler(namespaces, policy, ownNS)
	var reqs []admission.Request
	var want []admission.Response
	for _, glob := range []string{"/var/log/app/*.log", "/var/log/app/*.txt", "/var/log/app/*.json"} {
		req := podRequest(t, "shop", admissionv1.Create, appPod(map[string]string{injector.AnnotationTail + ".app": glob}))
		reqs = append(reqs, req)
		want = append(want, NewHandler(namespaces, policy, ownNS).Handle(ctx, req))
	}
	bad := podRequest(t, "shop", admissionv1.Create, appPod(map[string]string{injector.AnnotationTail + ".nosuch": "/var/log/app/*.log"}))
	reqs, want = append(reqs, bad), append(want, NewHandler(namespaces, policy, ownNS).Handle(ctx, bad))
	errs := make(chan string, 8*100)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				n := (g + i) % len(reqs)
				got := h.Handle(ctx, reqs[n])
				if diff := cmp.Diff(want[n], got); diff != "" {
					errs <- diff
					return
				}
				if err := got.Complete(reqs[n]); err != nil {
					errs <- err.Error()
					return
				}
				got.Result.Message = "changed by the caller"
				for j := range got.Warnings {
					got.Warnings[j] = "changed by the caller"
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for diff := range errs {
		t.Fatalf("an answer differs from a fresh handler's (-fresh +got):\n%s", diff)
	}
	if n := len(h.answers.entries); n != len(reqs) {
		t.Errorf("%d answers remembered, want %d", n, len(reqs))
	}
}

// TestAnswersCountWholeDiff: an answer patched by the whole-document diff (a pod that podPatch
// leaves to it) counts its patch in the cache's bound like any other.
func TestAnswersCountWholeDiff(t *testing.T) {
	namespaces := cachedNamespaces{"shop": namespace("shop", true, nil)}
	h := NewHandler(namespaces, StaticPolicy(injector.DefaultPolicy()), ownNS)
	pod := appPod(map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log", injector.AnnotationUpstream: "fluentd:24224"})
	pod.Name = "" // no name, generateName nor namespace: podPatch diffs the documents whole
	req := podRequest(t, "shop", admissionv1.Create, pod)
	resp := h.Handle(context.Background(), req)
	if !patched(resp) {
		t.Fatalf("not patched: %+v", resp.Result)
	}
	if err := resp.Complete(req); err != nil {
		t.Fatal(err)
	}
	if len(h.answers.entries) != 1 || h.answers.bytes < len(resp.Patch) {
		t.Errorf("%d answers remembered in %d bytes, want one of at least its %d-byte patch", len(h.answers.entries), h.answers.bytes, len(resp.Patch))
	}
}
