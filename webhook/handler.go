// Package webhook is sidelog's mutating admission webhook: it answers pod CREATE requests with
// the injector's mutation as a JSON patch, a denial naming the annotation that is wrong, or an
// unchanged pod.
//
// Decoding and the AdmissionReview envelope are controller-runtime's admission package; this
// package looks up the namespace's defaults, calls injector.Inject, answers with a JSON patch of
// the fields the injector changed (podPatch; the whole-document diff of
// admission.PatchResponseFromRaw when anything else changed) and counts what happened. A pod sent
// again byte for byte but for its managedFields (a ReplicaSet's next pod) is answered from what
// the handler remembers (answers).
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
)

// Path is where the webhook serves pod admission requests.
const Path = "/mutate-v1-pod"

// The opt-in: only pods in namespaces with this label and value are ever changed. The
// MutatingWebhookConfiguration's namespaceSelector sends only those; the handler checks again
// so that a misconfigured selector cannot widen it.
const (
	NamespaceLabel        = "sidelog.io/inject"
	NamespaceLabelEnabled = "enabled"
)

// KubeSystem is never injected, whatever its labels say.
const KubeSystem = "kube-system"

// Outcomes, the values of the outcome label of the admission metrics.
const (
	OutcomeInjected = "injected" // the agent was added, or injected anew from changed inputs
	OutcomeRemoved  = "removed"  // an injected pod (from a template) opted out: the agent was removed
	OutcomeSkipped  = "skipped"  // nothing to do: not opted in, not asked for, already injected (whose agent may be told its workload)
	OutcomeRefused  = "refused"  // the pod's or the namespace's annotations are wrong: denied
	OutcomeError    = "error"    // the webhook could not decide (namespace lookup, bad request)
)

// Handler answers pod admission requests.
type Handler struct {
	// FailurePolicy is the failurePolicy of the webhook configuration that sends the requests
	// (the chart passes it as --failure-policy). With Ignore, a request the webhook cannot
	// decide (namespace unreadable, no valid policy, a bug) is allowed unchanged with a warning
	// that says so, as the API server would allow it had the webhook been unreachable; with
	// Fail (or empty) it is refused. Only internal errors: a pod whose annotations are wrong is
	// refused whatever the policy.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// Owners finds the controllers of the pods the agent is in, whose workload the agent puts in
	// every record with the namespace's labels; nil: the pod's own controller only, no lookups.
	Owners *OwnerResolver

	namespaces client.Reader
	policy     func() *injector.Policy
	self       string
	decoder    admission.Decoder
	answers    *answers
}

// NewHandler returns a Handler that reads namespaces through namespaces (a cache of their
// metadata is enough: see NamespaceReader), asks policy for the cluster policy on every request
// (so that a reloaded policy applies at once; nil while no valid policy was ever loaded) and
// never changes pods in ownNamespace.
func NewHandler(namespaces client.Reader, policy func() *injector.Policy, ownNamespace string) *Handler {
	return &Handler{
		namespaces: namespaces,
		policy:     policy,
		self:       ownNamespace,
		decoder:    admission.NewDecoder(scheme.Scheme),
		answers:    newAnswers(answersMaxBytes),
	}
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, outcome := h.handle(ctx, req)
	observe(outcome, time.Since(start))
	log := logf.FromContext(ctx).WithValues("outcome", outcome, "dryRun", req.DryRun != nil && *req.DryRun)
	switch outcome {
	case OutcomeError:
		log.Error(nil, "admission failed", "message", resp.Result.Message)
	case OutcomeRefused:
		log.Info("pod refused", "message", resp.Result.Message)
	default:
		log.V(1).Info("pod admitted", "warnings", len(resp.Warnings))
	}
	if outcome == OutcomeError && h.FailurePolicy == admissionregistrationv1.Ignore {
		return admitDespite(resp, "the log agent was not added", "the webhook's failurePolicy is Ignore, so the pod is admitted without it")
	}
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	if req.Operation != admissionv1.Create || req.SubResource != "" ||
		req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return admission.Allowed("sidelog injects only on pod create"), OutcomeSkipped
	}
	if req.Namespace == KubeSystem || req.Namespace == h.self {
		return admission.Allowed("sidelog never injects pods in namespace " + req.Namespace), OutcomeSkipped
	}

	ns, optedIn, err := readNamespace(ctx, h.namespaces, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err), OutcomeError
	}
	if !optedIn {
		return admission.Allowed(fmt.Sprintf("namespace %s is not labelled %s=%s", req.Namespace, NamespaceLabel, NamespaceLabelEnabled)), OutcomeSkipped
	}

	policy := h.policy()
	if policy == nil {
		return admission.Errored(http.StatusServiceUnavailable, errNoPolicy), OutcomeError
	}
	// Read before the owners are: a change seen while they are read makes this answer stale.
	owners := h.Owners.Generation()
	if resp, outcome, ok := h.answers.get(req.Object.Raw, req.Namespace, ns.Annotations, ns.Labels, policy, owners); ok {
		return resp, outcome
	}
	resp, outcome, keep := h.inject(ctx, req, ns, policy)
	if outcome != OutcomeError && keep {
		h.answers.put(req.Object.Raw, req.Namespace, ns.Annotations, ns.Labels, policy, owners, resp, outcome)
	}
	return resp, outcome
}

// inject answers for the pod in req, in namespace ns (its annotations are the defaults, its
// labels go to the agent), under policy p. keep is false for an answer that may not be given
// again to the same pod: one whose owners could not be read, which the next pod of the
// ReplicaSet or Job may get right. Otherwise the owners are a function of the pod's bytes (its
// controller reference names the ReplicaSet or Job by uid) and of the owners' cache, whose
// generation the answer is remembered with: a ReplicaSet's own controller can change.
func (h *Handler) inject(ctx context.Context, req admission.Request, ns *metav1.PartialObjectMetadata, p *injector.Policy) (resp admission.Response, outcome string, keep bool) {
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err)), OutcomeError, false
	}
	nsLabels := ns.Labels
	if nsLabels == nil {
		nsLabels = map[string]string{}
	}
	w := injector.Workload{NamespaceLabels: nsLabels}
	var lookupWarning string
	// Looked up before the injector knows whether it injects: it writes the workload into the
	// agent's configuration as it encodes it, once. But not for a pod that will not have the
	// agent (opted out, or asking for no file), which must not wait for the API server; a pod
	// without a controller needs no lookup.
	if injector.ReadsWorkload(pod, ns.Annotations) {
		w.Owners, lookupWarning = h.Owners.Owners(ctx, req.Namespace, pod)
		w.OwnersIncomplete = lookupWarning != ""
	}
	mutated, out, err := injector.InjectFor(pod, ns.Annotations, p, w)
	if userErr := (*injector.Error)(nil); errors.As(err, &userErr) {
		return admission.Denied(err.Error()), OutcomeRefused, true
	} else if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("injecting the agent: %w", err)), OutcomeError, false
	}
	keep = true
	if out.Injected && lookupWarning != "" {
		logf.FromContext(ctx).Info("owner lookup failed", "warning", lookupWarning)
		out.Warnings, keep = append(out.Warnings, lookupWarning), false
	}
	if !out.Changed {
		// Not asked for, opted out, or injected before from the same inputs and for the same
		// workload (a reinvocation): nothing to change.
		return admission.Allowed(out.Reason).WithWarnings(out.Warnings...), OutcomeSkipped, keep
	}
	switch {
	case out.WorkloadOnly:
		// Injected before (a template that went through sidelog inject): only the cluster
		// knows its ReplicaSet or Job and its namespace's labels.
		outcome = OutcomeSkipped
	case out.Injected:
		outcome = OutcomeInjected
	default:
		outcome = OutcomeRemoved
	}
	resp = patchResponse(req.Object.Raw, pod, mutated)
	if !resp.Allowed {
		return resp, OutcomeError, false
	}
	return resp.WithWarnings(out.Warnings...), outcome, keep
}

// patchResponse admits the pod with the patch that makes mutated of original, decoded from raw:
// built from the fields the injector changes (podPatch), or, should anything else differ, by
// diffing the two documents whole.
func patchResponse(raw []byte, original, mutated *corev1.Pod) admission.Response {
	if ops, ok := podPatch(original, mutated); ok {
		// As PatchResponseFromRaw answers, but with the patch encoded: Complete leaves a
		// response without Patches as it is.
		resp := admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true}}
		if len(ops) > 0 {
			patch, err := encodePatch(ops)
			if err != nil {
				return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err))
			}
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
		return resp
	}
	b, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the mutated pod: %w", err))
	}
	resp := admission.PatchResponseFromRaw(raw, b)
	if len(resp.Patches) == 0 {
		return resp
	}
	// Encoded now, as Complete would: a remembered answer counts its patch's bytes.
	patch, err := json.Marshal(resp.Patches)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err))
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patches, resp.Patch, resp.PatchType = nil, patch, &pt
	return resp
}

// errNoPolicy answers while the webhook has no valid cluster policy: its readiness check says
// why, and its log.
var errNoPolicy = errors.New("the webhook has no valid cluster policy (its --policy file does not parse; see its log)")

// admitDespite turns an error answer into what failurePolicy Ignore promises: the object
// admitted unchanged, with a warning that kubectl prints: "sidelog: <what>: <error>; <why>".
func admitDespite(errored admission.Response, what, why string) admission.Response {
	msg := "internal error"
	if errored.Result != nil && errored.Result.Message != "" {
		msg = errored.Result.Message
	}
	return admission.Allowed("").WithWarnings("sidelog: " + what + ": " + msg + "; " + why)
}

// readNamespace reads the metadata of namespace name (its annotations are the team's defaults)
// and whether it opted in (NamespaceLabel).
func readNamespace(ctx context.Context, r client.Reader, name string) (*metav1.PartialObjectMetadata, bool, error) {
	ns := namespaceMetadata()
	if err := r.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return nil, false, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return ns, ns.Labels[NamespaceLabel] == NamespaceLabelEnabled, nil
}
