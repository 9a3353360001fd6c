package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/config"
)

const ownNS = "sidelog-system"

func init() {
	// controller-runtime's components log through this; the tests assert, they do not log.
	ctrllog.SetLogger(logr.Discard())
}

func namespace(name string, labelled bool, annotations map[string]string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{corev1.LabelMetadataName: name},
		Annotations: annotations,
	}}
	if labelled {
		ns.Labels[NamespaceLabel] = NamespaceLabelEnabled
	}
	return ns
}

// appPod has one container "app" whose logs are on emptyDir "logs" at /var/log/app.
func appPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: annotations},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: "example.com/web:1",
				VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: "/var/log/app"}},
			}},
			Volumes: []corev1.Volume{{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

func podRequest(t testing.TB, ns string, op admissionv1.Operation, pod *corev1.Pod) admission.Request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns,
		Operation: op,
		Object:    runtime.RawExtension{Raw: raw},
		DryRun:    ptr.To(false),
	}}
}

// applied returns the pod that resp's patch makes of req's.
func applied(t *testing.T, req admission.Request, resp admission.Response) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	raw := req.Object.Raw
	if patched(resp) {
		// Either the operations, which admission.Webhook encodes, or the encoded patch.
		p := resp.Patch
		if len(resp.Patches) > 0 {
			var err error
			if p, err = json.Marshal(resp.Patches); err != nil {
				t.Fatal(err)
			}
		} else if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
		}
		patch, err := jsonpatch.DecodePatch(p)
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = patch.Apply(raw); err != nil {
			t.Fatalf("applying the patch: %v", err)
		}
	}
	if err := json.Unmarshal(raw, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// patched reports whether resp has a patch, as operations or encoded.
func patched(resp admission.Response) bool { return len(resp.Patches) > 0 || len(resp.Patch) > 0 }

// agentConfig returns the agent's configuration in pod, or nil if the pod has no agent.
func agentConfig(t *testing.T, pod *corev1.Pod) *config.Config {
	t.Helper()
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name != injector.AgentContainer {
			continue
		}
		for _, e := range c.Env {
			if e.Name == config.Env {
				var cfg config.Config
				if err := json.Unmarshal([]byte(e.Value), &cfg); err != nil {
					t.Fatalf("agent config: %v", err)
				}
				return &cfg
			}
		}
		t.Fatalf("agent container without %s", config.Env)
	}
	return nil
}

func mustPolicy(t *testing.T, yaml string) *injector.Policy {
	t.Helper()
	p, err := injector.ParsePolicy([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHandle(t *testing.T) {
	tail := map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"}
	withUpstream := func(ann map[string]string, upstream string) map[string]string {
		out := map[string]string{injector.AnnotationUpstream: upstream}
		for k, v := range ann {
			out[k] = v
		}
		return out
	}
	objects := []client.Object{
		namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluent-bit.shop:24224"}),
		namespace("plain", false, nil),
		namespace("bare", true, nil),
		namespace(KubeSystem, true, nil),
		namespace(ownNS, true, nil),
	}
	tests := []struct {
		name      string
		ns        string
		op        admissionv1.Operation
		pod       *corev1.Pod
		policy    string
		wantOut   string
		wantAgent bool
		// wantUpstream is the agent's first upstream, when injected.
		wantUpstream string
		wantDenied   string // substring of the denial
		wantWarning  string // substring of a warning
	}{
		{name: "namespace default applies", ns: "shop", op: admissionv1.Create, pod: appPod(tail),
			wantOut: OutcomeInjected, wantAgent: true, wantUpstream: "fluent-bit.shop:24224"},
		{name: "pod's own annotation wins", ns: "shop", op: admissionv1.Create, pod: appPod(withUpstream(tail, "fluentd.logging:24224")),
			wantOut: OutcomeInjected, wantAgent: true, wantUpstream: "fluentd.logging:24224"},
		{name: "policy forbids the pod's override", ns: "shop", op: admissionv1.Create,
			pod: appPod(withUpstream(tail, "fluentd.logging:24224")), policy: "allowPodOverride: []",
			wantOut: OutcomeRefused, wantDenied: injector.AnnotationUpstream},
		{name: "unlabelled namespace", ns: "plain", op: admissionv1.Create, pod: appPod(withUpstream(tail, "f:1")),
			wantOut: OutcomeSkipped},
		{name: "kube-system even if labelled", ns: KubeSystem, op: admissionv1.Create, pod: appPod(withUpstream(tail, "f:1")),
			wantOut: OutcomeSkipped},
		{name: "own namespace even if labelled", ns: ownNS, op: admissionv1.Create, pod: appPod(withUpstream(tail, "f:1")),
			wantOut: OutcomeSkipped},
		{name: "not a create", ns: "shop", op: admissionv1.Update, pod: appPod(tail),
			wantOut: OutcomeSkipped},
		{name: "no annotations", ns: "shop", op: admissionv1.Create, pod: appPod(nil),
			wantOut: OutcomeSkipped},
		{name: "relative path refused", ns: "shop", op: admissionv1.Create,
			pod:     appPod(map[string]string{injector.AnnotationTail + ".app": "var/log/app/*.log"}),
			wantOut: OutcomeRefused, wantDenied: "sidelog.io/tail.app: \"var/log/app/*.log\" is not absolute"},
		{name: "no upstream anywhere refused", ns: "bare", op: admissionv1.Create, pod: appPod(tail),
			wantOut: OutcomeRefused, wantDenied: injector.AnnotationUpstream},
		{name: "added volume is a warning", ns: "shop", op: admissionv1.Create,
			pod:     appPod(map[string]string{injector.AnnotationTail + ".app": "/srv/logs/*.log"}),
			policy:  "missingVolume: emptyDir",
			wantOut: OutcomeInjected, wantAgent: true, wantUpstream: "fluent-bit.shop:24224",
			wantWarning: "emptyDir"},
	}
	c := fake.NewClientBuilder().WithObjects(objects...).Build()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := mustPolicy(t, tt.policy)
			h := NewHandler(c, StaticPolicy(policy), ownNS)
			before := counterValue(t, admissions.WithLabelValues(tt.wantOut))

			req := podRequest(t, tt.ns, tt.op, tt.pod)
			resp := h.Handle(context.Background(), req)

			if got := counterValue(t, admissions.WithLabelValues(tt.wantOut)); got != before+1 {
				t.Errorf("admissions{outcome=%q} went from %v to %v, want +1", tt.wantOut, before, got)
			}
			if tt.wantDenied != "" {
				if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden ||
					!strings.Contains(resp.Result.Message, tt.wantDenied) {
					t.Fatalf("response = allowed %v, result %+v; want a denial mentioning %q", resp.Allowed, resp.Result, tt.wantDenied)
				}
				return
			}
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			pod := applied(t, req, resp)
			cfg := agentConfig(t, pod)
			if (cfg != nil) != tt.wantAgent {
				t.Fatalf("agent injected = %v, want %v (patched %v)", cfg != nil, tt.wantAgent, patched(resp))
			}
			if !tt.wantAgent && patched(resp) {
				t.Errorf("patches for a pod left alone: %v %s", resp.Patches, resp.Patch)
			}
			if tt.wantAgent && cfg.Upstream.Servers[0] != tt.wantUpstream {
				t.Errorf("upstream = %v, want %s first", cfg.Upstream.Servers, tt.wantUpstream)
			}
			if tt.wantWarning != "" && !strings.Contains(strings.Join(resp.Warnings, "\n"), tt.wantWarning) {
				t.Errorf("warnings = %q, want one mentioning %q", resp.Warnings, tt.wantWarning)
			}
			if tt.wantAgent {
				// A reinvocation (reinvocationPolicy IfNeeded) sees the injected pod: no change.
				again := h.Handle(context.Background(), podRequest(t, tt.ns, tt.op, pod))
				if !again.Allowed || patched(again) {
					t.Errorf("second admission of the injected pod: allowed %v, patched %v; want allowed, not patched", again.Allowed, patched(again))
				}
			}
		})
	}
}

func TestHandleNamespaceError(t *testing.T) {
	c := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("connection refused")
		},
	})
	h := NewHandler(c, StaticPolicy(injector.DefaultPolicy()), ownNS)
	before := counterValue(t, admissions.WithLabelValues(OutcomeError))
	resp := h.Handle(context.Background(), podRequest(t, "shop", admissionv1.Create, appPod(nil)))
	if resp.Allowed || resp.Result.Code != http.StatusInternalServerError || !strings.Contains(resp.Result.Message, "reading namespace shop") {
		t.Errorf("response = allowed %v, %+v; want a 500 naming the namespace", resp.Allowed, resp.Result)
	}
	if got := counterValue(t, admissions.WithLabelValues(OutcomeError)); got != before+1 {
		t.Errorf("admissions{outcome=error} = %v, want %v", got, before+1)
	}
}

func TestNamespaceReaderFallsBack(t *testing.T) {
	live := fake.NewClientBuilder().WithObjects(namespace("new", true, nil)).Build()
	cached := fake.NewClientBuilder().Build() // has not seen "new" yet
	r := NamespaceReader(cached, live)
	ns := namespaceMetadata()
	if err := r.Get(context.Background(), client.ObjectKey{Name: "new"}, ns); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if ns.Labels[NamespaceLabel] != NamespaceLabelEnabled {
		t.Errorf("labels = %v, want the live object's", ns.Labels)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestHandleFailurePolicy checks that an internal error is answered as the configuration's
// failurePolicy says: refused with Fail, admitted unchanged with a warning with Ignore. A pod
// whose annotations are wrong is refused either way.
func TestHandleFailurePolicy(t *testing.T) {
	broken := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("connection refused")
		},
	})
	good := fake.NewClientBuilder().WithObjects(namespace("shop", true, nil)).Build()
	noPolicy := func() *injector.Policy { return nil }
	pod := appPod(map[string]string{injector.AnnotationTail: "/var/log/app/*.log", injector.AnnotationUpstream: "fluentd:24224"})
	for _, tt := range []struct {
		name        string
		namespaces  client.Reader
		policy      func() *injector.Policy
		pod         *corev1.Pod
		fp          admissionregistrationv1.FailurePolicyType
		wantAllowed bool
		want        string // in the warning (allowed) or the message (refused)
	}{
		{"namespace unreadable, Fail", broken, StaticPolicy(injector.DefaultPolicy()), pod, admissionregistrationv1.Fail, false, "reading namespace shop"},
		{"namespace unreadable, default", broken, StaticPolicy(injector.DefaultPolicy()), pod, "", false, "reading namespace shop"},
		{"namespace unreadable, Ignore", broken, StaticPolicy(injector.DefaultPolicy()), pod, admissionregistrationv1.Ignore, true, "reading namespace shop"},
		{"no valid policy, Fail", good, noPolicy, pod, admissionregistrationv1.Fail, false, "no valid cluster policy"},
		{"no valid policy, Ignore", good, noPolicy, pod, admissionregistrationv1.Ignore, true, "no valid cluster policy"},
		{"bad annotation, Ignore", good, StaticPolicy(injector.DefaultPolicy()), appPod(map[string]string{injector.Prefix + "tial": "/x"}), admissionregistrationv1.Ignore, false, "did you mean"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(tt.namespaces, tt.policy, ownNS)
			h.FailurePolicy = tt.fp
			resp := h.Handle(context.Background(), podRequest(t, "shop", admissionv1.Create, tt.pod))
			if resp.Allowed != tt.wantAllowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tt.wantAllowed, resp.Result)
			}
			if tt.wantAllowed {
				if patched(resp) {
					t.Errorf("admitted with a patch %v %s: want the pod unchanged", resp.Patches, resp.Patch)
				}
				if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tt.want) || !strings.Contains(resp.Warnings[0], "Ignore") {
					t.Errorf("warnings = %q, want one saying %q and why the pod is admitted", resp.Warnings, tt.want)
				}
			} else if !strings.Contains(resp.Result.Message, tt.want) {
				t.Errorf("message = %q, want it to say %q", resp.Result.Message, tt.want)
			}
		})
	}
}

// TestHandleInjectedTemplate: a pod created from a template that already carries the agent
// (sidelog inject in a GitOps pipeline) is left alone when its inputs are those the agent was
// made from, injected anew when they changed, and stripped of the agent when it opts out.
func TestHandleInjectedTemplate(t *testing.T) {
	c := fake.NewClientBuilder().WithObjects(namespace("shop", true, nil)).Build()
	h := NewHandler(c, StaticPolicy(injector.DefaultPolicy()), ownNS)
	template, _, err := injector.Inject(appPod(map[string]string{
		injector.AnnotationTail: "/var/log/app/*.log", injector.AnnotationUpstream: "fluentd:24224",
	}), nil, injector.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	changed := template.DeepCopy()
	changed.Annotations[injector.AnnotationUpstream] = "fluentd-new:24224"
	optOut := template.DeepCopy()
	optOut.Annotations[injector.AnnotationInject] = "false"

	for _, tt := range []struct {
		name         string
		pod          *corev1.Pod
		outcome      string
		wantUpstream string // "" for no agent
	}{
		{"same inputs", template, OutcomeSkipped, "fluentd:24224"},
		{"changed upstream", changed, OutcomeInjected, "fluentd-new:24224"},
		{"opted out", optOut, OutcomeRemoved, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := counterValue(t, admissions.WithLabelValues(tt.outcome))
			req := podRequest(t, "shop", admissionv1.Create, tt.pod)
			resp := h.Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp.Result)
			}
			if got := counterValue(t, admissions.WithLabelValues(tt.outcome)); got != before+1 {
				t.Errorf("admissions{outcome=%s} = %v, want %v", tt.outcome, got, before+1)
			}
			if tt.outcome == OutcomeSkipped {
				// Injected from the same inputs: only the agent's configuration is completed
				// with what the cluster knows (the namespace's labels), and only once.
				var ops []patchOp
				if err := json.Unmarshal(resp.Patch, &ops); err != nil || len(ops) != 1 || ops[0].Op != "replace" || ops[0].Path != "/spec/initContainers/0/env/5" {
					t.Errorf("patch of a pod injected from the same inputs: %s, want one replace of the agent's %s", resp.Patch, config.Env)
				}
				again := podRequest(t, "shop", admissionv1.Create, applied(t, req, resp))
				if resp := h.Handle(context.Background(), again); !resp.Allowed || patched(resp) {
					t.Errorf("admitted again: allowed %v, patch %s; want no change", resp.Allowed, resp.Patch)
				}
			}
			pod := applied(t, req, resp)
			cfg := agentConfig(t, pod)
			if cfg != nil && cfg.NamespaceLabels[NamespaceLabel] != NamespaceLabelEnabled {
				t.Errorf("the agent's namespace labels are %v, want the namespace's", cfg.NamespaceLabels)
			}
			switch {
			case tt.wantUpstream == "" && cfg != nil:
				t.Errorf("the agent is still there: %+v", cfg)
			case tt.wantUpstream == "" && (pod.Annotations[injector.AnnotationStatus] != "" || pod.Labels[injector.LabelInjected] != "" || len(pod.Spec.Volumes) != 1):
				t.Errorf("left behind: status %q, labels %v, volumes %v", pod.Annotations[injector.AnnotationStatus], pod.Labels, pod.Spec.Volumes)
			case tt.wantUpstream != "" && (cfg == nil || cfg.Upstream.Servers[0] != tt.wantUpstream):
				t.Errorf("agent config %+v, want upstream %s", cfg, tt.wantUpstream)
			case tt.wantUpstream != "" && pod.Labels[injector.LabelInjected] != "true":
				t.Errorf("labels %v, want %s=true", pod.Labels, injector.LabelInjected)
			}
		})
	}
}
