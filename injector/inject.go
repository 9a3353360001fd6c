package injector

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Outcome says what Inject did.
type Outcome struct {
	// Injected says the agent is in the returned pod: added now, or found there.
	Injected bool
	// Reason says why Inject changed nothing: "no sidelog.io/tail annotation",
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
}

// Inject returns a mutated deep copy of pod; pod itself is never modified. namespace is the
// annotations of the pod's Namespace (the team's defaults; may be nil). A nil policy is
// DefaultPolicy.
//
// A pod is injected when it has a tail annotation and neither it nor its namespace opts out.
// A pod that already has the status annotation and the agent container is returned as it is,
// so Inject applied to its own output changes nothing. Every mistake in the annotations, and
// every part of the pod that the agent cannot work with, is an error (an *Error when a user
// can fix it) whose message names the annotation and says what was expected.
func Inject(pod *corev1.Pod, namespace map[string]string, policy *Policy) (*corev1.Pod, Outcome, error) {
	if pod == nil {
		return nil, Outcome{}, errors.New("injector: no pod")
	}
	p, err := policy.complete()
	if err != nil {
		return nil, Outcome{}, err
	}
	out := pod.DeepCopy()

	// An opt-out is honoured before anything else is looked at, so that it always works.
	if v, ok := out.Annotations[AnnotationInject]; ok {
		// A bad value is reported by parseKeys below, with every other mistake of the pod.
		if want, err := parseInject(v); err == nil && !want {
			return out, Outcome{Reason: AnnotationInject + "=false"}, nil
		}
	} else if strings.TrimSpace(namespace[AnnotationInject]) == "false" {
		return out, Outcome{Reason: "namespace annotation " + AnnotationInject + "=false"}, nil
	}

	_, hasStatus := out.Annotations[AnnotationStatus]
	if hasStatus && hasAgent(&out.Spec) {
		return out, Outcome{Injected: true, Reason: "already injected"}, nil
	}

	ps, err := parseKeys(out.Annotations, FromPod, p)
	if err != nil {
		return nil, Outcome{}, err
	}
	if _, ok := ps.global[optTail]; !ok && len(ps.per[optTail]) == 0 {
		if key, ok := ps.anyBut(optInject, optStatus); ok {
			return nil, Outcome{}, errorf(key, FromPod, "the pod has no %s or %s.<container> annotation, so nothing is tailed and this has no effect", AnnotationTail, AnnotationTail)
		}
		return out, Outcome{Reason: "no " + AnnotationTail + " annotation"}, nil
	}
	// The namespace's annotations matter, and are checked, only for pods that ask for the
	// agent: a mistake there must not block the namespace's other pods.
	ns, err := parseKeys(namespace, FromNamespace, p)
	if err != nil {
		return nil, Outcome{}, err
	}

	o, err := inject(out, ps, ns, p)
	if err != nil {
		return nil, Outcome{}, err
	}
	if hasStatus {
		o.Warnings = append([]string{AnnotationStatus + " was set but the agent was missing: injected anew"}, o.Warnings...)
	}
	return out, o, nil
}

// inject adds the agent to pod, which it mutates.
func inject(pod *corev1.Pod, ps, ns annotationSet, p *Policy) (Outcome, error) {
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
	cfg, warnings, err := agentConfig(pod, r, p)
	if err != nil {
		return Outcome{}, err
	}

	agent := agentContainer(pod, r, lm, p, cfg, noToken)
	if w := addPodResources(pod, agent.Resources); w != "" {
		warnings = append(warnings, w)
	}
	own := agentVolumes(r, noToken)
	if r.mode == ModeNative {
		// Last among the init containers: it must start before the app containers, and init
		// containers that prepare the log volumes should be done before it looks at them.
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, agent)
	} else {
		if len(pod.Spec.Containers) == 1 && pod.Annotations[DefaultContainerAnnotation] == "" {
			setAnnotation(pod, DefaultContainerAnnotation, pod.Spec.Containers[0].Name)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, agent)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, own...)

	st := Status{Mode: r.mode, AppMounts: lm.appMounts}
	for _, in := range r.inputs {
		st.Containers = append(st.Containers, pod.Spec.Containers[in.container].Name)
	}
	for _, v := range own {
		st.Volumes = append(st.Volumes, v.Name)
	}
	st.Volumes = append(st.Volumes, lm.volumes...)
	b, err := json.Marshal(st)
	if err != nil {
		return Outcome{}, fmt.Errorf("injector: encoding %s: %w", AnnotationStatus, err)
	}
	setAnnotation(pod, AnnotationStatus, string(b))

	return Outcome{Injected: true, Warnings: slices.Concat(r.warnings, lm.warnings, warnings)}, nil
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
