package injector

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
)

// digestVersion changes when the digest's inputs are encoded differently.
const digestVersion = "v1"

// inputDigest identifies what an agent is made from: the pod's sidelog.io/ annotations (but
// the status), its namespace's sidelog.io/ annotations and the policy's revision. Inject
// records it in the status and injects anew a pod whose inputs have another digest.
func inputDigest(pod, namespace map[string]string, p *Policy) string {
	own := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if strings.HasPrefix(k, Prefix) && k != AnnotationStatus {
				out[k] = v
			}
		}
		return out
	}
	b, _ := json.Marshal(struct {
		Version   string            `json:"v"`
		Pod       map[string]string `json:"pod"`
		Namespace map[string]string `json:"namespace"`
		Policy    string            `json:"policy"`
	}{digestVersion, own(pod), own(namespace), PolicyRevision(p)})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// PolicyRevision identifies a policy by what it says once its defaults are filled in: two
// policies with the same revision inject the same agent. Of KubernetesVersion (which the
// webhook fills from discovery, and `sidelog inject` may not know) only whether it runs native
// sidecars counts. An invalid policy has the revision "invalid".
//
// The revision of the policy last asked for is kept (it costs a third of an injection), so a
// policy must not be modified once it has been used, as the webhook's never are.
func PolicyRevision(p *Policy) string {
	if last := lastRevision.Load(); last != nil && last.policy == p {
		return last.revision
	}
	rev := policyRevision(p)
	lastRevision.Store(&revisionOf{policy: p, revision: rev})
	return rev
}

type revisionOf struct {
	policy   *Policy
	revision string
}

var lastRevision atomic.Pointer[revisionOf]

func policyRevision(p *Policy) string {
	c, err := p.complete()
	if err != nil {
		return "invalid"
	}
	if native, _ := nativeSupported(c.KubernetesVersion); native {
		c.KubernetesVersion = ""
	} else {
		c.KubernetesVersion = "v1.28"
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "invalid"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ParseStatus reads the value of AnnotationStatus.
func ParseStatus(v string) (Status, error) { return parseStatus(v) }

func parseStatus(v string) (Status, error) {
	var st Status
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		return Status{}, fmt.Errorf("%s: %w", AnnotationStatus, err)
	}
	return st, nil
}

// optOut returns pod for an opt-out: as it is, or without the agent when it was injected.
func optOut(pod *corev1.Pod, reason string) (*corev1.Pod, Outcome, error) {
	raw, ok := pod.Annotations[AnnotationStatus]
	if !ok && !hasAgent(&pod.Spec) {
		return pod, Outcome{Reason: reason}, nil
	}
	if !ok {
		// A container of that name without a status is the user's: checkReserved refuses it
		// when the pod asks for the agent; an opted-out pod is left alone.
		return pod, Outcome{Reason: reason}, nil
	}
	st, _ := parseStatus(raw) // unreadable: remove what sidelog's reserved names say is its own
	removeAgent(pod, st)
	return pod, Outcome{Reason: reason, Changed: true, Warnings: []string{
		fmt.Sprintf("%s: removed the agent that %s recorded (container %s, volumes %s)", reason, AnnotationStatus, AgentContainer, strings.Join(ownedVolumes(pod, st), ", ")),
	}}, nil
}

// ownedVolumes are the volumes removeAgent removes: those the status lists and any other that
// bears a name only the injector gives (checkReserved refuses them in users' pods).
func ownedVolumes(pod *corev1.Pod, st Status) []string {
	var names []string
	for _, n := range st.Volumes {
		if isReservedVolume(n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if isReservedVolume(v.Name) && !slices.Contains(names, v.Name) {
			names = append(names, v.Name)
		}
	}
	return names
}

func isReservedVolume(name string) bool {
	return slices.Contains(reservedVolumes, name) || strings.HasPrefix(name, logVolumePrefix)
}

// removeAgent undoes what Inject did, as st records it: the agent container, its volumes and
// their mounts in app containers, the pod-level resources it added, the default-container
// annotation it set, the status and the label.
func removeAgent(pod *corev1.Pod, st Status) {
	vols := ownedVolumes(pod, st)
	isAgent := func(c corev1.Container) bool { return c.Name == AgentContainer }
	pod.Spec.InitContainers = slices.DeleteFunc(pod.Spec.InitContainers, isAgent)
	pod.Spec.Containers = slices.DeleteFunc(pod.Spec.Containers, isAgent)
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return slices.Contains(vols, v.Name) })
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return slices.Contains(vols, m.Name) })
			if len(cs[i].VolumeMounts) == 0 {
				cs[i].VolumeMounts = nil
			}
		}
	}
	if len(pod.Spec.InitContainers) == 0 {
		pod.Spec.InitContainers = nil
	}
	if len(pod.Spec.Volumes) == 0 {
		pod.Spec.Volumes = nil
	}
	if r, add := pod.Spec.Resources, st.PodResources; r != nil && add != nil {
		subtract(r.Requests, add.Requests)
		subtract(r.Limits, add.Limits)
	}
	if st.DefaultContainer {
		delete(pod.Annotations, DefaultContainerAnnotation)
	}
	delete(pod.Annotations, AnnotationStatus)
	delete(pod.Labels, LabelInjected)
	if len(pod.Labels) == 0 {
		pod.Labels = nil
	}
}

func subtract(l, minus corev1.ResourceList) {
	for _, name := range slices.Sorted(maps.Keys(minus)) {
		if q, ok := l[name]; ok {
			q.Sub(minus[name])
			l[name] = q
		}
	}
}

// added returns what after has more than before, for the resource lists of pod-level
// resources; nil when nothing was added.
func added(before, after *corev1.ResourceRequirements) *corev1.ResourceRequirements {
	if before == nil || after == nil {
		return nil
	}
	diff := func(b, a corev1.ResourceList) corev1.ResourceList {
		var out corev1.ResourceList
		for name, q := range a {
			d := q.DeepCopy()
			d.Sub(b[name])
			if d.Sign() > 0 {
				if out == nil {
					out = corev1.ResourceList{}
				}
				out[name] = d
			}
		}
		return out
	}
	r := &corev1.ResourceRequirements{Requests: diff(before.Requests, after.Requests), Limits: diff(before.Limits, after.Limits)}
	if r.Requests == nil && r.Limits == nil {
		return nil
	}
	return r
}
