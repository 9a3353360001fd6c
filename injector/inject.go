package injector

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// LabelInjected is the label, value "true", that Inject puts on the pods (and pod templates) it
// injects, so that a PodMonitor, kubectl get -l or a NetworkPolicy can select them. It goes
// when the agent is removed.
const LabelInjected = "sidelog.io/injected"

// MetricsPortName is the name of the agent container's /metrics port, which the chart's
// PodMonitor scrapes.
const MetricsPortName = metricsPortName

// Outcome says what Inject did.
type Outcome struct {
	// Injected says the agent is in the returned pod: added now, or found there.
	Injected bool
	// Changed says the returned pod differs from the input: the agent was added, injected
	// anew because its inputs changed, or removed (an opt-out, or tail globs gone), or, with
	// WorkloadOnly, told its workload.
	Changed bool
	// WorkloadOnly says that the only change is the workload that InjectFor wrote into the
	// configuration of an agent injected before from the same inputs.
	WorkloadOnly bool
	// Reason says why Inject did not inject the agent now: "no sidelog.io/tail annotation",
	// "sidelog.io/inject=false", "already injected", ...; empty when it injected the agent.
	Reason string
	// Warnings are what the injector decided on its own (a volume added, a timeout shortened,
	// a mode chosen), for admission warnings.
	Warnings []string
}

// Status is the value of AnnotationStatus, as JSON: what the injector did to the pod.
type Status struct {
	// Mode is the sidecar mode used: ModeNative or ModeLegacy.
	Mode string `json:"mode"`
	// Containers are the app containers whose files the agent tails.
	Containers []string `json:"containers"`
	// Volumes are the volumes added to the pod.
	Volumes []string `json:"volumes"`
	// AppMounts are the mounts added to app containers, as container:path; only for log paths
	// that were on no volume (Policy.MissingVolume "emptyDir").
	AppMounts []string `json:"appMounts,omitempty"`
	// PodResources is what was added to the pod-level spec.resources (pods that set them).
	PodResources *corev1.ResourceRequirements `json:"podResources,omitempty"`
	// DefaultContainer says the injector set kubectl.kubernetes.io/default-container (legacy
	// mode, one app container).
	DefaultContainer bool `json:"defaultContainer,omitempty"`
	// Digest identifies the inputs that produced the agent: the pod's sidelog.io/ annotations,
	// its namespace's, and the policy's revision (see digest). A pod whose inputs no longer
	// have this digest is injected anew.
	Digest string `json:"digest,omitempty"`
	// Warnings are what the injector decided on its own, as the admission warnings said.
	Warnings []string `json:"warnings,omitempty"`
}

// Inject returns a mutated deep copy of pod; pod itself is never modified. namespace is the
// annotations of the pod's Namespace (the team's defaults; may be nil). A nil policy is
// DefaultPolicy.
//
// A pod is injected when it has a tail annotation and neither it nor its namespace opts out.
// A pod that already has the status annotation and the agent container, injected from the
// same inputs (the status's digest), is returned as it is, so Inject applied to its own output
// changes nothing. One injected from other inputs has its agent, and what the status says came
// with it, removed and is injected anew; one that opts out (or no longer asks for any file) has
// them removed. Every mistake in the annotations, and
// every part of the pod that the agent cannot work with, is an error (an *Error when a user
// can fix it) whose message names the annotation and says what was expected.
func Inject(pod *corev1.Pod, namespace map[string]string, policy *Policy) (*corev1.Pod, Outcome, error) {
	return InjectFor(pod, namespace, policy, Workload{})
}

// InjectFor is Inject that also tells the agent the pod's workload w (see SetWorkload): in the
// configuration it writes, encoded once, or, for an agent injected before from the same inputs
// (a template that went through sidelog inject), in the configuration that agent has, which is
// then the only change (Outcome.WorkloadOnly). A workload the configuration cannot carry is left
// out with a warning: the pod is never refused for it.
func InjectFor(pod *corev1.Pod, namespace map[string]string, policy *Policy, w Workload) (*corev1.Pod, Outcome, error) {
	if pod == nil {
		return nil, Outcome{}, errors.New("injector: no pod")
	}
	p, err := policy.completed()
	if err != nil {
		return nil, Outcome{}, err
	}
	out := pod.DeepCopy()

	// An opt-out is honoured before anything else is looked at, so that it always works.
	if reason := optsOut(out.Annotations, namespace); reason != "" {
		return optOut(out, reason)
	}

	// The caller's policy, not its completed copy: its revision is kept.
	digest := inputDigest(out.Annotations, namespace, policy)
	var again []string // why an agent that was there is replaced
	if rawStatus, hasStatus := out.Annotations[AnnotationStatus]; hasStatus {
		st, stErr := parseStatus(rawStatus)
		switch {
		case !hasAgent(&out.Spec):
			again = append(again, AnnotationStatus+" was set but the agent was missing: injected anew")
		case stErr != nil:
			again = append(again, fmt.Sprintf("%s could not be read (%v): the agent was removed and injected anew", AnnotationStatus, stErr))
		case st.Digest == digest:
			o := Outcome{Injected: true, Reason: "already injected"}
			changed, err := SetWorkload(out, w)
			if err != nil { // changed all the same when only the namespace's labels were left out
				o.Warnings = []string{workloadLeftOut(err)}
			}
			if changed {
				o.Changed, o.WorkloadOnly = true, true
			}
			return out, o, nil
		default:
			again = append(again, fmt.Sprintf("%s: the agent was injected from other annotations, namespace defaults or policy (digest %s, now %s): removed and injected anew",
				AnnotationStatus, cmp.Or(st.Digest, "none"), digest))
		}
		removeAgent(out, st)
	}

	ps, err := parseKeys(out.Annotations, FromPod, p)
	if err != nil {
		return nil, Outcome{}, err
	}
	if _, ok := ps.global[optTail]; !ok && len(ps.per[optTail]) == 0 {
		if key, ok := ps.anyBut(optInject, optStatus); ok {
			return nil, Outcome{}, errorf(key, FromPod, "the pod has no %s or %s.<container> annotation, so nothing is tailed and this has no effect", AnnotationTail, AnnotationTail)
		}
		o := Outcome{Reason: "no " + AnnotationTail + " annotation"}
		if again != nil {
			o.Changed = true
			o.Warnings = []string{"the pod no longer has a " + AnnotationTail + " annotation: removed the agent that " + AnnotationStatus + " recorded"}
		}
		return out, o, nil
	}
	// The namespace's annotations matter, and are checked, only for pods that ask for the
	// agent: a mistake there must not block the namespace's other pods.
	ns, err := parseKeys(namespace, FromNamespace, p)
	if err != nil {
		return nil, Outcome{}, err
	}

	o, err := inject(out, ps, ns, p, digest, w)
	if err != nil {
		return nil, Outcome{}, err
	}
	o.Warnings = append(again, o.Warnings...)
	return out, o, nil
}

// optsOut says why a pod with these annotations, in a namespace with these, opts out: "" when
// neither the pod nor, unless the pod says otherwise, its namespace does. A bad value of the
// pod's annotation is no opt-out: parseKeys reports it, with every other mistake of the pod.
func optsOut(pod, namespace map[string]string) string {
	if v, ok := pod[AnnotationInject]; ok {
		if want, err := parseInject(v); err == nil && !want {
			return AnnotationInject + "=false"
		}
		return ""
	}
	if strings.TrimSpace(namespace[AnnotationInject]) == "false" {
		return "namespace annotation " + AnnotationInject + "=false"
	}
	return ""
}

// inject adds the agent to pod, which it mutates.
func inject(pod *corev1.Pod, ps, ns annotationSet, p *Policy, digest string, w Workload) (Outcome, error) {
	if err := checkReserved(pod); err != nil {
		return Outcome{}, err
	}
	r, err := resolve(pod, ps, ns, p)
	if err != nil {
		return Outcome{}, err
	}

	noToken := pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken
	lm := &logMounts{pod: pod, policy: p, own: ownDirs(r, noToken)}
	for _, in := range r.inputs {
		for _, g := range in.paths {
			if err := lm.add(in.container, in.tail, g); err != nil {
				return Outcome{}, err
			}
		}
	}
	for _, in := range r.inputs {
		for _, g := range in.cleanup {
			if err := lm.writable(in.container, in.cleanupKey, g); err != nil {
				return Outcome{}, err
			}
		}
	}
	cfg, warnings, workloadWarning, err := agentConfig(pod, r, p, w)
	if err != nil {
		return Outcome{}, err
	}

	agent := agentContainer(pod, r, lm, p, cfg, noToken)
	podResources := pod.Spec.Resources.DeepCopy()
	if w := addPodResources(pod, agent.Resources); w != "" {
		warnings = append(warnings, w)
	}
	st := Status{Mode: r.mode, AppMounts: lm.appMounts, Digest: digest, PodResources: added(podResources, pod.Spec.Resources)}
	own := agentVolumes(r, noToken)
	if r.mode == ModeNative {
		// Last among the init containers: it must start before the app containers, and init
		// containers that prepare the log volumes should be done before it looks at them.
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, agent)
	} else {
		if len(pod.Spec.Containers) == 1 && pod.Annotations[DefaultContainerAnnotation] == "" {
			setAnnotation(pod, DefaultContainerAnnotation, pod.Spec.Containers[0].Name)
			st.DefaultContainer = true
		}
		pod.Spec.Containers = append(pod.Spec.Containers, agent)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, own...)

	for _, in := range r.inputs {
		st.Containers = append(st.Containers, pod.Spec.Containers[in.container].Name)
	}
	for _, v := range own {
		st.Volumes = append(st.Volumes, v.Name)
	}
	st.Volumes = append(st.Volumes, lm.volumes...)
	st.Warnings = slices.Concat(r.warnings, lm.warnings, warnings)
	b, err := json.Marshal(st)
	if err != nil {
		return Outcome{}, fmt.Errorf("injector: encoding %s: %w", AnnotationStatus, err)
	}
	setAnnotation(pod, AnnotationStatus, string(b))
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[LabelInjected] = "true"

	o := Outcome{Injected: true, Changed: true, Warnings: slices.Clone(st.Warnings)}
	if workloadWarning != "" {
		o.Warnings = append(o.Warnings, workloadWarning)
	}
	return o, nil
}

// hasAgent reports whether the pod has a container named AgentContainer.
func hasAgent(spec *corev1.PodSpec) bool {
	named := func(c corev1.Container) bool { return c.Name == AgentContainer }
	return slices.ContainsFunc(spec.InitContainers, named) || slices.ContainsFunc(spec.Containers, named)
}

// checkReserved refuses pods that use the names of what the injector adds, and pods that
// cannot run the agent.
func checkReserved(pod *corev1.Pod) error {
	if hasAgent(&pod.Spec) {
		return &Error{Message: fmt.Sprintf("the pod has a container named %q but no %s annotation: that name is reserved for the agent that %s adds; rename the container",
			AgentContainer, AnnotationStatus, AnnotationTail)}
	}
	for _, v := range pod.Spec.Volumes {
		if slices.Contains(reservedVolumes, v.Name) || strings.HasPrefix(v.Name, logVolumePrefix) {
			return &Error{Message: fmt.Sprintf("the pod has a volume named %q: names %s and %s* are reserved for the volumes that %s adds; rename the volume",
				v.Name, strings.Join(reservedVolumes, ", "), logVolumePrefix, AnnotationTail)}
		}
	}
	return checkLinux(pod)
}

func setAnnotation(pod *corev1.Pod, key, value string) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[key] = value
}
