package injector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/sidecar/config"
)

// Workload is what the agent is told about its pod beyond what the downward API gives: the pod's
// controllers and its namespace's labels, which records carry so that aggregators can route and
// alert by workload and by team. The webhook resolves them when the pod is admitted; `sidelog
// inject` knows the workload it injects, and the namespace when the input has it.
type Workload struct {
	// Owners are the pod's controllers, nearest first (config.Config.Owners); nil leaves those
	// the agent's configuration has, empty clears them (a pod without a controller).
	Owners []config.Owner
	// OwnersIncomplete says that Owners stop short of the workload (a lookup failed): owners
	// the configuration already has (sidelog inject's workload) are kept rather than replaced.
	OwnersIncomplete bool
	// NamespaceLabels are the labels of the pod's namespace; nil leaves those the configuration
	// has (not known), empty says the namespace has none.
	NamespaceLabels map[string]string
}

// SetWorkload writes w into the configuration of the agent that Inject added to pod, which it
// mutates, and reports whether that changed the pod: a pod whose agent already says w (or that
// has no agent) is left as it is, so applying it again changes nothing. When the namespace's
// labels are more than every record should carry (maxNamespaceLabelBytes) or would make the
// configuration too large, it writes the owners without them and returns an error that says so,
// with changed true if the owners changed anything: aggregators route by the workload, which a
// few short names give, while a namespace's labels have no bound.
//
// It is apart from Inject, and not part of the digest in the status, because it describes where
// the pod runs rather than what it asks for: a template injected by `sidelog inject` must not be
// injected anew at admission for the webhook to add what only the cluster knows, and a
// namespace relabelled later must not make its pods' agents different from their templates'.
func SetWorkload(pod *corev1.Pod, w Workload) (bool, error) {
	if w.Owners == nil && w.NamespaceLabels == nil {
		return false, nil
	}
	env := agentConfigEnv(pod)
	if env == nil {
		return false, nil
	}
	var c config.Config
	dec := json.NewDecoder(bytes.NewReader([]byte(env.Value)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return false, fmt.Errorf("injector: reading the agent's configuration (%s) to add the pod's workload: %w", config.Env, err)
	}
	if !w.apply(&c) {
		return false, nil
	}
	b, labelsLeftOut, err := encodeWorkload(c)
	if err != nil {
		return false, err
	}
	if env.Value == string(b) { // the labels left out again
		return false, labelsLeftOut
	}
	env.Value = string(b)
	return true, labelsLeftOut
}

// ReadsWorkload reports whether InjectFor may read a workload for pod, in a namespace with these
// annotations: not when the pod or its namespace opts out, nor when the pod asks for no file and
// has no status of an agent injected before, for InjectFor then leaves the pod as it is or removes
// the agent. The webhook looks the pod's owners up only when it does, so that a pod that will not
// have the agent never waits for the API server.
func ReadsWorkload(pod *corev1.Pod, namespace map[string]string) bool {
	if optsOut(pod.Annotations, namespace) != "" {
		return false
	}
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return true
	}
	for k := range pod.Annotations {
		if k == AnnotationTail || strings.HasPrefix(k, AnnotationTail+".") {
			return true
		}
	}
	return false
}

// apply writes w into c and reports whether that changed c.
func (w Workload) apply(c *config.Config) bool {
	changed := false
	if w.Owners != nil && !slices.Equal(w.Owners, c.Owners) && !(w.OwnersIncomplete && len(c.Owners) > 0) {
		c.Owners, changed = slices.Clone(w.Owners), true
		if len(c.Owners) == 0 {
			c.Owners = nil
		}
	}
	if w.NamespaceLabels != nil && (c.NamespaceLabels == nil || !maps.Equal(w.NamespaceLabels, c.NamespaceLabels)) {
		c.NamespaceLabels, changed = maps.Clone(w.NamespaceLabels), true
	}
	return changed
}

// withWorkload encodes c, a configuration the injector built, with w (see encodeWorkload).
func withWorkload(c config.Config, w Workload) (b []byte, labelsLeftOut, err error) {
	w.apply(&c)
	return encodeWorkload(c)
}

// encodeWorkload encodes c, which carries a workload, or says why the agent could not take it
// (err). When the namespace's labels are more than every record should carry or would make the
// configuration too large, b is c without them, and labelsLeftOut says so.
func encodeWorkload(c config.Config) (b []byte, labelsLeftOut, err error) {
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("injector: the agent's configuration with the pod's workload would be invalid: %w", err)
	}
	if n := labelBytes(c.NamespaceLabels); n > maxNamespaceLabelBytes {
		labelsLeftOut = fmt.Errorf("injector: the namespace's %d labels take %d bytes, more than the %d that every record may carry: records go without them",
			len(c.NamespaceLabels), n, maxNamespaceLabelBytes)
		c.NamespaceLabels = nil // not known, rather than the labels of an earlier admission
	}
	b, err = c.Encode()
	if err == nil && len(b) > maxConfigBytes && len(c.NamespaceLabels) > 0 {
		labelsLeftOut = fmt.Errorf("injector: the agent's configuration with its namespace's %d labels would be %d bytes, more than the %d an environment variable can safely carry: records go without them",
			len(c.NamespaceLabels), len(b), maxConfigBytes)
		c.NamespaceLabels = nil
		b, err = c.Encode()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("injector: encoding the agent config: %w", err)
	}
	if len(b) > maxConfigBytes {
		return nil, nil, fmt.Errorf("injector: the agent's configuration with the pod's owners would be %d bytes, more than the %d an environment variable can safely carry: records go without them",
			len(b), maxConfigBytes)
	}
	return b, labelsLeftOut, nil
}

// maxNamespaceLabelBytes bounds the namespace's labels (keys and values) that the agent is told.
// Every record carries them (forward: in each record's kubernetes map), so a namespace labelled
// without measure would make each 200-byte line a record of that size, and a batch of 1 MiB a
// few dozen lines. A namespace's labels usually take a few hundred bytes.
const maxNamespaceLabelBytes = 8 << 10

func labelBytes(labels map[string]string) int {
	n := 0
	for k, v := range labels {
		n += len(k) + len(v)
	}
	return n
}

// workloadLeftOut is the warning for a workload that the agent's configuration could not carry.
func workloadLeftOut(err error) string {
	return "sidelog: " + err.Error()
}

// agentConfigEnv is the agent container's config.Env variable, nil when the pod has no agent
// or the agent no such variable.
func agentConfigEnv(pod *corev1.Pod) *corev1.EnvVar {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name != AgentContainer {
				continue
			}
			for j := range cs[i].Env {
				if e := &cs[i].Env[j]; e.Name == config.Env && e.ValueFrom == nil {
					return e
				}
			}
		}
	}
	return nil
}
