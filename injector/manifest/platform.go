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
