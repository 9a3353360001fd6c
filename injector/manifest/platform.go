package manifest

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/config"
)

// knativeUserContainer and knativeQueueProxy are the names Knative Serving gives the
// container of a revision that names none, and the container it adds to every revision's pods.
const (
	knativeUserContainer = "user-container"
	knativeQueueProxy    = "queue-proxy"
)

// knative handles a Knative Service or Configuration. Its spec.template is a Revision
// template, not a pod template: Knative makes each revision's pods from it, adding its
// queue-proxy container, and its admission refuses most of what the agent needs (init
// containers, emptyDir and downwardAPI volumes are behind its feature flags). So it is not
// injected here: its annotations are checked as the webhook will check them on the pods, with
// the queue-proxy container, and a warning says where the agent will come from.
func (rn *run) knative(id Document, tmpl *yaml.Node, before corev1.PodTemplateSpec, nsAnn map[string]string, ns *Namespace, nsName string) {
	pod := &corev1.Pod{ObjectMeta: *before.ObjectMeta.DeepCopy(), Spec: *before.Spec.DeepCopy()}
	if len(pod.Spec.Containers) == 1 && pod.Spec.Containers[0].Name == "" {
		pod.Spec.Containers[0].Name = knativeUserContainer
	}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: knativeQueueProxy, Image: "knative-queue-proxy"})
	_, o, err := injector.Inject(pod, nsAnn, rn.opts.Policy)
	if err != nil {
		rn.injectErrors(id, tmpl, err, ns, nsName)
		return
	}
	if !o.Injected || o.Reason != "" {
		return
	}
	rn.warnf(tmpl.Line, id, "not injected: the spec.template of a Knative %s is a Revision template, not a pod template; Knative makes the pods from it, adds its %s container, and refuses init containers and emptyDir volumes unless its kubernetes.podspec-init-containers and kubernetes.podspec-volumes-emptydir features are enabled. "+
		"Label the namespace sidelog.io/inject=enabled and the webhook injects each revision's pods, which carry these annotations (checked here as the webhook will check them, %s included)",
		id.Kind, knativeQueueProxy, knativeQueueProxy)
}

// checkInjected warns when a template that already has the agent asks now for another one:
// its annotations, its namespace's or the policy changed since it was injected. The agent is
// taken out as its status says (container, volumes, mounts added to app containers) and the
// template injected again; an agent or volumes that differ from those it has mean the
// template's agent is stale. sidelog inject leaves it as it is, as the webhook does.
func (rn *run) checkInjected(id Document, tmpl *yaml.Node, pod *corev1.Pod, nsAnn map[string]string, policy *injector.Policy) {
	line := keyLine(tmpl, injector.AnnotationStatus)
	var st injector.Status
	if err := json.Unmarshal([]byte(pod.Annotations[injector.AnnotationStatus]), &st); err != nil {
		rn.warnf(line, id, "%s is not what sidelog writes (%v); sidelog inject leaves the agent it found as it is", injector.AnnotationStatus, err)
		return
	}
	stripped := pod.DeepCopy()
	isAgent := func(c corev1.Container) bool { return c.Name == injector.AgentContainer }
	stripped.Spec.InitContainers = slices.DeleteFunc(stripped.Spec.InitContainers, isAgent)
	stripped.Spec.Containers = slices.DeleteFunc(stripped.Spec.Containers, isAgent)
	stripped.Spec.Volumes = slices.DeleteFunc(stripped.Spec.Volumes, func(v corev1.Volume) bool { return slices.Contains(st.Volumes, v.Name) })
	for _, m := range st.AppMounts {
		name, path, _ := strings.Cut(m, ":")
		for i := range stripped.Spec.Containers {
			c := &stripped.Spec.Containers[i]
			if c.Name == name {
				c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
					return vm.MountPath == path && slices.Contains(st.Volumes, vm.Name)
				})
			}
		}
	}
	delete(stripped.Annotations, injector.AnnotationStatus)

	const fix = "sidelog inject leaves an injected template as it is: to inject it anew, remove the " + injector.AgentContainer +
		" container, the volumes listed in " + injector.AnnotationStatus + " and that annotation"
	again, o, err := injector.Inject(stripped, nsAnn, policy)
	switch {
	case err != nil:
		rn.warnf(line, id, "the template has an agent, but its sidelog annotations as they are now would be refused: %s; %s",
			strings.ReplaceAll(err.Error(), "\n", "; "), fix)
		return
	case !o.Injected || o.Reason != "":
		rn.warnf(line, id, "the template has an agent, but as it is now it would get none (%s); %s", o.Reason, fix)
		return
	}
	var changed []string
	if a, b := agentOf(pod), agentOf(again); !equality.Semantic.DeepEqual(a, b) {
		changed = append(changed, agentDiff(a, b)...)
	}
	if !equality.Semantic.DeepEqual(volumesOf(pod, st.Volumes), volumesOf(again, st.Volumes)) || again.Annotations[injector.AnnotationStatus] != pod.Annotations[injector.AnnotationStatus] {
		changed = append(changed, "the agent's volumes")
	}
	if len(changed) > 0 {
		rn.warnf(line, id, "the template's agent was injected for other annotations, namespace defaults or policy than it has now: %s would differ; %s",
			strings.Join(changed, ", "), fix)
	}
}

func agentOf(pod *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == injector.AgentContainer {
				return &cs[i]
			}
		}
	}
	return nil
}

func volumesOf(pod *corev1.Pod, names []string) []corev1.Volume {
	var vs []corev1.Volume
	for _, v := range pod.Spec.Volumes {
		if slices.Contains(names, v.Name) {
			vs = append(vs, v)
		}
	}
	return vs
}

// agentDiff says how two agent containers differ: which fields of the agent's configuration,
// and whether its image, resources and mounts.
func agentDiff(a, b *corev1.Container) []string {
	if a == nil || b == nil {
		return []string{"the agent container"}
	}
	var what, fields []string
	ca, cb := agentConfig(a), agentConfig(b)
	for _, k := range slices.Sorted(maps.Keys(cb)) {
		if !equality.Semantic.DeepEqual(ca[k], cb[k]) {
			fields = append(fields, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(ca)) {
		if _, ok := cb[k]; !ok {
			fields = append(fields, k)
		}
	}
	if len(fields) > 0 {
		what = append(what, "the agent's configuration ("+strings.Join(fields, ", ")+")")
	}
	if a.Image != b.Image {
		what = append(what, "the agent's image")
	}
	if !equality.Semantic.DeepEqual(a.Resources, b.Resources) {
		what = append(what, "the agent's resources")
	}
	if !equality.Semantic.DeepEqual(a.VolumeMounts, b.VolumeMounts) {
		what = append(what, "the agent's volume mounts")
	}
	if len(what) == 0 {
		what = []string{"the agent container"}
	}
	return what
}

// agentConfig is the agent's configuration, from its environment, as a JSON object.
func agentConfig(c *corev1.Container) map[string]any {
	for _, e := range c.Env {
		if e.Name == config.Env {
			var m map[string]any
			_ = json.Unmarshal([]byte(e.Value), &m) // a mangled value differs from the injector's
			return m
		}
	}
	return nil
}
