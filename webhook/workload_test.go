package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
)

func deployment(templateAnnotations, own map[string]string) *appsv1.Deployment {
	pod := appPod(templateAnnotations)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: own},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}},
	}
}

func workloadRequest(t *testing.T, op admissionv1.Operation, group, kind string, obj, old runtime.Object) admission.Request {
	t.Helper()
	raw := func(o runtime.Object) []byte {
		if o == nil {
			return nil
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "1", Kind: metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
		Namespace: "shop", Name: "web", Operation: op,
		Object: runtime.RawExtension{Raw: raw(obj)}, OldObject: runtime.RawExtension{Raw: raw(old)},
	}}
}

// TestWorkloadHandler: a workload's template is refused with the message its pods would get,
// and admitted with the injector's warnings otherwise; it is never changed.
func TestWorkloadHandler(t *testing.T) {
	c := fake.NewClientBuilder().WithObjects(namespace("shop", true, nil), namespace("other", false, nil)).Build()
	h := NewWorkloadHandler(c, StaticPolicy(mustPolicy(t, "upstream: [fluentd:24224]\nmissingVolume: emptyDir\n")), ownNS)

	typo := map[string]string{injector.Prefix + "tial": "/var/log/app/*.log"}
	podMessage := func() string {
		ph := NewHandler(c, h.policy, ownNS)
		resp := ph.Handle(context.Background(), podRequest(t, "shop", admissionv1.Create, appPod(typo)))
		return resp.Result.Message
	}()
	cron := &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
	}
	cronPod := appPod(map[string]string{injector.AnnotationTail: "/var/log/app/*.log", injector.AnnotationSidecarMode: "legacy"})
	cron.Spec.JobTemplate.Spec.Template = corev1.PodTemplateSpec{ObjectMeta: cronPod.ObjectMeta, Spec: cronPod.Spec}
	cron.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure

	for _, tt := range []struct {
		name        string
		req         admission.Request
		wantAllowed bool
		wantMessage string // in the denial
		wantWarning string // in the warnings, "" for none
	}{
		{"a misspelt annotation is refused as the pod would be",
			workloadRequest(t, admissionv1.Create, "apps", "Deployment", deployment(typo, nil), nil), false, podMessage, ""},
		{"the injector's decisions come back as warnings",
			workloadRequest(t, admissionv1.Create, "apps", "Deployment", deployment(map[string]string{injector.AnnotationTail: "/srv/logs/*.log"}, nil), nil), true, "", "was on no volume"},
		{"every decision is a warning, the agent's identity too",
			workloadRequest(t, admissionv1.Create, "apps", "Deployment", deployment(map[string]string{injector.AnnotationTail: "/var/log/app/*.log", injector.AnnotationMultiline: "java"}, nil), nil), true, "", "the agent runs as uid"},
		{"a CronJob's pods run to completion: legacy mode is refused",
			workloadRequest(t, admissionv1.Create, "batch", "CronJob", cron, nil), false, injector.AnnotationSidecarMode, ""},
		{"an update that leaves a bad template alone is admitted",
			workloadRequest(t, admissionv1.Update, "apps", "Deployment", deployment(typo, map[string]string{"deployment.kubernetes.io/revision": "2"}), deployment(typo, nil)), true, "", ""},
		{"an update that changes the template is checked",
			workloadRequest(t, admissionv1.Update, "apps", "Deployment", deployment(typo, nil), deployment(nil, nil)), false, podMessage, ""},
		{"annotations on the Deployment itself are pointed out",
			workloadRequest(t, admissionv1.Create, "apps", "Deployment", deployment(nil, map[string]string{injector.AnnotationTail: "/x/*.log"}), nil), true, "", "move it to spec.template.metadata.annotations"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.Handle(context.Background(), tt.req)
			if resp.Allowed != tt.wantAllowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tt.wantAllowed, resp.Result)
			}
			if len(resp.Patches) != 0 || resp.Patch != nil {
				t.Errorf("the workload was patched: %v", resp.Patches)
			}
			if !tt.wantAllowed && !strings.Contains(resp.Result.Message, tt.wantMessage) {
				t.Errorf("message %q, want %q", resp.Result.Message, tt.wantMessage)
			}
			if w := strings.Join(resp.Warnings, "\n"); !strings.Contains(w, tt.wantWarning) || (tt.wantWarning == "" && w != "") {
				t.Errorf("warnings %q, want %q", resp.Warnings, tt.wantWarning)
			}
		})
	}

	t.Run("no valid policy: admitted with a warning", func(t *testing.T) {
		h := NewWorkloadHandler(c, func() *injector.Policy { return nil }, ownNS)
		resp := h.Handle(context.Background(), workloadRequest(t, admissionv1.Create, "apps", "Deployment", deployment(typo, nil), nil))
		if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "no valid cluster policy") {
			t.Errorf("allowed %v, warnings %q: want admitted with a warning", resp.Allowed, resp.Warnings)
		}
	})
	t.Run("a namespace that did not opt in", func(t *testing.T) {
		d := deployment(typo, nil)
		d.Namespace = "other"
		req := workloadRequest(t, admissionv1.Create, "apps", "Deployment", d, nil)
		req.Namespace = "other"
		if resp := h.Handle(context.Background(), req); !resp.Allowed {
			t.Errorf("refused in a namespace that did not opt in: %+v", resp.Result)
		}
	})
}
