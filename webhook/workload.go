package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
)

// WorkloadPath is where the webhook checks workloads' pod templates.
const WorkloadPath = "/check-workload"

// WorkloadHandler answers admission requests for workloads with a pod template (Deployment,
// StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, and any kind whose spec.template is a pod
// template, such as an Argo Rollout): it runs the injector on the template as the pod webhook
// will run it on the pods, refuses a template whose sidelog annotations the pods would be
// refused for, with the same message, and returns the injector's decisions as warnings, so
// that they reach the user at kubectl apply rather than a ReplicaSet's events. It never
// changes the workload: the pods are injected when they are created.
//
// An internal error admits the workload with a warning: the check is advice given early, and
// the pod webhook enforces the same rules on every pod.
type WorkloadHandler struct {
	namespaces client.Reader
	policy     func() *injector.Policy
	self       string
}

// NewWorkloadHandler returns a WorkloadHandler with NewHandler's arguments.
func NewWorkloadHandler(namespaces client.Reader, policy func() *injector.Policy, ownNamespace string) *WorkloadHandler {
	return &WorkloadHandler{namespaces: namespaces, policy: policy, self: ownNamespace}
}

// Handle implements admission.Handler.
func (h *WorkloadHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, outcome := h.handle(ctx, req)
	workloadChecks.WithLabelValues(outcome).Inc()
	workloadSeconds.Observe(time.Since(start).Seconds())
	log := logf.FromContext(ctx).WithValues("outcome", outcome, "kind", req.Kind.Kind, "name", req.Name)
	switch outcome {
	case OutcomeError:
		log.Error(nil, "workload check failed; admitted", "message", resp.Result.Message)
		return admitDespite(resp, "the pod template was not checked", "the workload is admitted, and its pods will be checked when they are created")
	case OutcomeRefused:
		log.Info("workload refused", "message", resp.Result.Message)
	}
	return resp
}

func (h *WorkloadHandler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	if (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || req.SubResource != "" {
		return admission.Allowed("sidelog checks workloads on create and update"), OutcomeSkipped
	}
	if req.Namespace == "" || req.Namespace == KubeSystem || req.Namespace == h.self {
		return admission.Allowed("sidelog never injects pods in namespace " + req.Namespace), OutcomeSkipped
	}
	obj, err := decodeObject(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the %s: %w", req.Kind.Kind, err)), OutcomeError
	}
	var warnings []string
	if keys := sidelogKeys(obj.GetAnnotations()); len(keys) > 0 {
		warnings = append(warnings, fmt.Sprintf("%s on the %s itself: sidelog reads the annotations of the pod template; move %s to %s",
			strings.Join(keys, ", "), req.Kind.Kind, plural(keys, "it", "them"), strings.Join(templatePath(obj.Object), ".")+".metadata.annotations"))
	}
	tmpl, found, err := unstructured.NestedMap(obj.Object, templatePath(obj.Object)...)
	if err != nil || !found {
		return admission.Allowed("no pod template").WithWarnings(warnings...), OutcomeSkipped
	}
	if req.Operation == admissionv1.Update {
		if old, err := decodeObject(req.OldObject.Raw); err == nil {
			if oldTmpl, ok, _ := unstructured.NestedMap(old.Object, templatePath(old.Object)...); ok && reflect.DeepEqual(oldTmpl, tmpl) {
				// Only a changed template is checked: a controller updating the workload's
				// metadata or replicas must never be refused for a template it did not write.
				return admission.Allowed("pod template unchanged").WithWarnings(warnings...), OutcomeSkipped
			}
		}
	}
	var template corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &template); err != nil {
		return admission.Allowed("spec.template is not a pod template").WithWarnings(warnings...), OutcomeSkipped
	}
	if len(sidelogKeys(template.Annotations)) == 0 {
		return admission.Allowed("the pod template has no " + injector.Prefix + " annotation").WithWarnings(warnings...), OutcomeSkipped
	}

	ns, optedIn, err := readNamespace(ctx, h.namespaces, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err), OutcomeError
	}
	if !optedIn {
		return admission.Allowed("namespace not opted in").WithWarnings(warnings...), OutcomeSkipped
	}
	policy := h.policy()
	if policy == nil {
		return admission.Errored(http.StatusServiceUnavailable, errNoPolicy), OutcomeError
	}

	pod := &corev1.Pod{ObjectMeta: *template.ObjectMeta.DeepCopy(), Spec: *template.Spec.DeepCopy()}
	pod.Namespace = req.Namespace
	if kind := req.Kind.Kind; req.Kind.Group == "batch" && (kind == "Job" || kind == "CronJob") {
		// The Job controller owns the pods: the injector refuses legacy mode for them.
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: req.Name}}
	}
	_, out, err := injector.Inject(pod, ns.Annotations, policy)
	if userErr := (*injector.Error)(nil); errors.As(err, &userErr) {
		return admission.Denied(err.Error()).WithWarnings(warnings...), OutcomeRefused
	} else if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("checking the pod template: %w", err)), OutcomeError
	}
	return admission.Allowed(out.Reason).WithWarnings(append(warnings, out.Warnings...)...), OutcomeSkipped
}

func decodeObject(raw []byte) (*unstructured.Unstructured, error) {
	obj := &unstructured.Unstructured{}
	if err := json.Unmarshal(raw, &obj.Object); err != nil {
		return nil, err
	}
	return obj, nil
}

// templatePath is where obj keeps its pod template: spec.jobTemplate.spec.template for a
// CronJob (or any kind built the same way), spec.template for the others.
func templatePath(obj map[string]any) []string {
	if _, ok, _ := unstructured.NestedMap(obj, "spec", "jobTemplate", "spec", "template"); ok {
		return []string{"spec", "jobTemplate", "spec", "template"}
	}
	return []string{"spec", "template"}
}

func sidelogKeys(annotations map[string]string) []string {
	var keys []string
	for k := range annotations {
		if strings.HasPrefix(k, injector.Prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func plural(s []string, one, many string) string {
	if len(s) == 1 {
		return one
	}
	return many
}

// WorkloadMatchCondition sends the workload webhook only workloads whose pod template, or whose
// own metadata (a mistake it warns about), has a sidelog.io/ annotation: the others never wait
// for sidelog, whatever happens to it.
var WorkloadMatchCondition = admissionregistrationv1.MatchCondition{
	Name: "has-sidelog-annotation",
	Expression: "(has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('" + injector.Prefix + "'))) || " +
		"(has(object.spec) && has(object.spec.template) && has(object.spec.template.metadata) && has(object.spec.template.metadata.annotations) && " +
		"object.spec.template.metadata.annotations.exists(k, k.startsWith('" + injector.Prefix + "'))) || " +
		"(has(object.spec) && has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) && has(object.spec.jobTemplate.spec.template) && " +
		"has(object.spec.jobTemplate.spec.template.metadata) && has(object.spec.jobTemplate.spec.template.metadata.annotations) && " +
		"object.spec.jobTemplate.spec.template.metadata.annotations.exists(k, k.startsWith('" + injector.Prefix + "')))",
}
