package injector

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Parts of the pod spec, outside the annotations, that decide whether the agent can run in the
// pod and what it must change in it.

// osLabels are the node labels that say a node's operating system.
var osLabels = []string{corev1.LabelOSStable, "beta.kubernetes.io/os"}

// checkLinux refuses pods that can only run on nodes other than Linux, where the agent cannot
// start (and, as a native sidecar, would keep the app from starting): by spec.os, by
// nodeSelector, or by required node affinity. The refusal names the field.
func checkLinux(pod *corev1.Pod) error {
	fix := fmt.Sprintf("remove the %s annotations from pods for Windows nodes, or set %s: \"false\"", Prefix, AnnotationInject)
	if os := pod.Spec.OS; os != nil && os.Name != corev1.Linux {
		return &Error{Key: AnnotationTail, Message: fmt.Sprintf("the agent runs on Linux only, and the pod's spec.os.name is %q; %s", os.Name, fix)}
	}
	for _, l := range osLabels {
		if v, ok := pod.Spec.NodeSelector[l]; ok && v != string(corev1.Linux) {
			return &Error{Key: AnnotationTail, Message: fmt.Sprintf("the agent runs on Linux only, and the pod's spec.nodeSelector %s: %s places it on other nodes; %s", l, v, fix)}
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	var why string
	for _, t := range terms {
		// Terms are ORed: the pod can land on Linux unless every term rules it out.
		i := slices.IndexFunc(t.MatchExpressions, excludesLinux)
		if i < 0 {
			return nil
		}
		e := t.MatchExpressions[i]
		why = fmt.Sprintf("%s %s %v", e.Key, e.Operator, e.Values)
	}
	if why == "" {
		return nil
	}
	return &Error{Key: AnnotationTail, Message: fmt.Sprintf("the agent runs on Linux only, and the pod's spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution (%s) places it on other nodes; %s", why, fix)}
}

// excludesLinux reports whether a node selector requirement rules out Linux nodes.
func excludesLinux(e corev1.NodeSelectorRequirement) bool {
	if !slices.Contains(osLabels, e.Key) {
		return false
	}
	linux := slices.Contains(e.Values, string(corev1.Linux))
	switch e.Operator {
	case corev1.NodeSelectorOpIn:
		return !linux
	case corev1.NodeSelectorOpNotIn:
		return linux
	case corev1.NodeSelectorOpDoesNotExist:
		return true
	}
	return false
}

// addPodResources adds the agent's requests and limits to the pod-level resources
// (spec.resources, Kubernetes 1.32+), for each resource the pod sets there: the API server
// refuses a pod whose pod-level requests are below the sum of its containers', and the agent
// must not take its share out of the app's budget unannounced. It returns a warning saying
// what changed, or "".
func addPodResources(pod *corev1.Pod, agent corev1.ResourceRequirements) string {
	pr := pod.Spec.Resources
	if pr == nil {
		return ""
	}
	var changes []string
	for _, l := range []struct {
		field      string
		pod, agent corev1.ResourceList
	}{{"requests", pr.Requests, agent.Requests}, {"limits", pr.Limits, agent.Limits}} {
		for _, name := range slices.Sorted(maps.Keys(l.pod)) {
			add, ok := l.agent[name]
			if !ok {
				continue
			}
			q := l.pod[name]
			before := q.String()
			q.Add(add)
			l.pod[name] = q
			changes = append(changes, fmt.Sprintf("%s.%s %s to %s", l.field, name, before, q.String()))
		}
	}
	if len(changes) == 0 {
		return ""
	}
	return fmt.Sprintf("spec.resources (pod-level) raised by the agent's own: %s", strings.Join(changes, ", "))
}
