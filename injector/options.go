package injector

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sidelog/sidelog/sidecar/config"
)

// request is what a pod asks for, resolved against its namespace's annotations and the policy.
type request struct {
	inputs    []input
	upstream  []string
	security  upstreamSecurity
	mode      string
	resources corev1.ResourceRequirements
	port      int32
	// uid and gid the agent runs as; nil leaves them to the platform (Policy.AgentIdentity).
	uid, gid *int64
	warnings []string
}

// input is one tailed app container.
type input struct {
	container int // index in pod.Spec.Containers
	tail      setting
	paths     []string
	exclude   []string
	multiline *config.Multiline
	parser    string
	// readFrom is head, tail or ReadFromAuto, which agentConfig settles by the volumes.
	readFrom    string
	readFromKey string // the annotation that said it, or "" for the policy
	ignoreOlder config.Duration
	timeKey     string
	timeFormat  string
	rateLimit   *config.RateLimit // nil: none
	// cleanup are the globs of rotated files the agent removes once delivered (AnnotationCleanup),
	// from cleanupKey.
	cleanup    []string
	cleanupKey setting
}

// pick returns the value that applies to container (or to the pod when container is ""): the
// pod's own (its container key, then its pod-wide key), then the namespace's likewise. A pod's
// pod-wide key wins over its namespace's container key: the pod's author said it for all of
// their containers.
func pick(pod, ns annotationSet, opt, container string) (setting, bool) {
	if s, ok := pod.get(opt, container); ok {
		return s, true
	}
	return ns.get(opt, container)
}

// resolve works out what the pod asks for. Values were parsed by parseKeys; what is left to
// check is how they fit the pod.
func resolve(pod *corev1.Pod, ps, ns annotationSet, p *Policy) (*request, error) {
	r := &request{}
	apps := pod.Spec.Containers
	isApp := func(name string) bool {
		return slices.ContainsFunc(apps, func(c corev1.Container) bool { return c.Name == name })
	}
	if g, ok := ps.global[optTail]; ok {
		if len(apps) != 1 {
			return nil, errorf(g.key, FromPod, "this shorthand is for a pod with one app container, and this pod has %d (%s): use %s.<container>",
				len(apps), containerNames(apps), AnnotationTail)
		}
		if s, ok := ps.per[optTail][apps[0].Name]; ok {
			return nil, errorf(g.key, FromPod, "set either %s or %s, not both", g.key, s.key)
		}
	}
	for _, opt := range []string{optTail, optExclude, optMultiline, optParser, optReadFrom, optIgnoreOlder, optTimeKey, optTimeFormat, optRateLimit, optCleanup} {
		for _, name := range slices.Sorted(maps.Keys(ps.per[opt])) {
			s := ps.per[opt][name]
			if !isApp(name) {
				return nil, unknownContainer(s, name, pod)
			}
			if _, tailed := ps.get(optTail, name); !tailed {
				return nil, errorf(s.key, FromPod, "container %q has no tail globs (%s.%s), so this has no effect", name, AnnotationTail, name)
			}
		}
	}

	for i, c := range apps {
		t, ok := ps.get(optTail, c.Name)
		if !ok {
			continue
		}
		in := input{container: i, tail: t, paths: t.parsed.([]string), parser: config.ParserNone}
		if s, ok := pick(ps, ns, optExclude, c.Name); ok {
			in.exclude = s.parsed.([]string)
		}
		if s, ok := pick(ps, ns, optMultiline, c.Name); ok {
			in.multiline = s.parsed.(*config.Multiline)
		}
		if s, ok := pick(ps, ns, optParser, c.Name); ok {
			in.parser = s.parsed.(string)
		}
		if err := in.resolveReading(ps, ns, p, c.Name); err != nil {
			return nil, err
		}
		if err := in.resolveRateLimit(ps, ns, p, c.Name); err != nil {
			return nil, err
		}
		if s, ok := ps.get(optCleanup, c.Name); ok {
			in.cleanup, in.cleanupKey = s.parsed.([]string), s
		}
		r.inputs = append(r.inputs, in)
	}
	for i, in := range r.inputs {
		for _, prev := range r.inputs[:i] {
			for _, g := range in.paths {
				if slices.Contains(prev.paths, g) {
					return nil, errorf(in.tail.key, FromPod, "%s is tailed for container %q too (%s): the agent would ship every line twice",
						g, apps[prev.container].Name, prev.tail.key)
				}
			}
		}
	}

	for _, in := range r.inputs {
		if err := checkCleanup(in, r.inputs, apps); err != nil {
			return nil, err
		}
	}

	up := setting{key: "upstream", origin: FromPolicy}
	if s, ok := pick(ps, ns, optUpstream, ""); ok {
		r.upstream, up = s.parsed.([]string), s
	} else if len(p.Upstream) > 0 {
		r.upstream = p.Upstream
	} else {
		return nil, errorf(AnnotationUpstream, FromPod, "no upstream: set it on the pod or its namespace to the aggregator's host:port, or set upstream in the cluster policy")
	}
	if err := r.resolveSecurity(ps, ns, p, up); err != nil {
		return nil, err
	}

	if err := r.resolveMode(pod, ps, ns, p); err != nil {
		return nil, err
	}
	if err := r.resolveResources(ps, ns, p); err != nil {
		return nil, err
	}
	r.resolveIdentity(pod, p)
	return r, r.resolvePort(pod, ps, ns, p)
}

// resolveReading works out where files start, which are too old, and where the event time
// comes from, for the container named name: its annotations, its namespace's, then the policy.
func (in *input) resolveReading(ps, ns annotationSet, p *Policy, name string) error {
	in.readFrom = cmp.Or(p.ReadFrom, ReadFromAuto)
	if s, ok := pick(ps, ns, optReadFrom, name); ok {
		in.readFrom, in.readFromKey = s.parsed.(string), s.key
	}
	in.ignoreOlder = p.IgnoreOlder
	if s, ok := pick(ps, ns, optIgnoreOlder, name); ok {
		in.ignoreOlder = s.parsed.(config.Duration)
	}
	keySet, keyOK := pick(ps, ns, optTimeKey, name)
	fmtSet, fmtOK := pick(ps, ns, optTimeFormat, name)
	if in.parser != config.ParserJSON {
		// Only a parsed line has fields. A default (the policy's, the namespace's) is for the
		// containers it can apply to; the pod's own annotation asks for what cannot be.
		for _, s := range []struct {
			set setting
			ok  bool
		}{{keySet, keyOK}, {fmtSet, fmtOK}} {
			if s.ok && s.set.origin == FromPod {
				return errorf(s.set.key, FromPod, "container %q has parser %q: only a JSON line has fields to take the time from; set %s.%s: json too",
					name, in.parser, AnnotationParser, name)
			}
		}
		return nil
	}
	in.timeKey = p.TimeKey
	if keyOK {
		in.timeKey = keySet.parsed.(string)
	}
	if in.timeKey == "" {
		if fmtOK && fmtSet.origin == FromPod {
			return errorf(fmtSet.key, FromPod, "no %s for container %q: set it to the field whose value this format reads", AnnotationTimeKey, name)
		}
		return nil
	}
	in.timeFormat = cmp.Or(p.TimeFormat, config.TimeRFC3339)
	if fmtOK {
		in.timeFormat = fmtSet.parsed.(string)
	}
	return nil
}

func unknownContainer(s setting, name string, pod *corev1.Pod) error {
	if slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == name }) {
		return errorf(s.key, s.origin, "%q is an init container; only app containers (%s) can be tailed", name, containerNames(pod.Spec.Containers))
	}
	return errorf(s.key, s.origin, "the pod has no app container %q; its app containers are %s", name, containerNames(pod.Spec.Containers))
}

func containerNames(cs []corev1.Container) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// resolveMode picks the sidecar mode and refuses legacy for pods that run to completion: a
// legacy agent is a regular container that only stops when it is told to, so such a pod (and
// its Job) would never finish.
func (r *request) resolveMode(pod *corev1.Pod, ps, ns annotationSet, p *Policy) error {
	s, ok := pick(ps, ns, optSidecarMode, "")
	if !ok {
		s = setting{key: "sidecarMode", origin: FromPolicy, parsed: p.SidecarMode}
	}
	r.mode = s.parsed.(string)
	why := ""
	if r.mode == ModeAuto {
		native, _ := nativeSupported(p.KubernetesVersion)
		switch {
		case native && p.KubernetesVersion == "":
			r.mode = ModeNative
			r.warnings = append(r.warnings, "sidecar mode auto chose native: the cluster policy gives no kubernetesVersion")
		case native:
			r.mode = ModeNative
		default:
			r.mode = ModeLegacy
			why = fmt.Sprintf(" (auto chose it: the cluster policy's kubernetesVersion %s is older than 1.29)", p.KubernetesVersion)
			r.warnings = append(r.warnings, fmt.Sprintf("sidecar mode auto chose legacy: the cluster policy's kubernetesVersion %s is older than 1.29", p.KubernetesVersion))
		}
	}
	if r.mode != ModeLegacy {
		return nil
	}
	fix := fmt.Sprintf("set %s: native (needs Kubernetes 1.29 or later)", AnnotationSidecarMode)
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" && strings.HasPrefix(o.APIVersion, "batch/") {
			return errorf(s.key, s.origin, "legacy mode%s adds the agent as a regular container, which keeps running after the app finishes, so Job %q would never complete; %s",
				why, o.Name, fix)
		}
	}
	if rp := pod.Spec.RestartPolicy; rp == corev1.RestartPolicyNever || rp == corev1.RestartPolicyOnFailure {
		return errorf(s.key, s.origin, "legacy mode%s adds the agent as a regular container, which keeps running after the app finishes, so a pod with restartPolicy %s would never complete; %s",
			why, rp, fix)
	}
	return nil
}

// resourceOptions maps the resource annotations to the agent's resources.
var resourceOptions = []struct {
	opt    string
	limits bool
	name   corev1.ResourceName
}{
	{optRequestsCPU, false, corev1.ResourceCPU},
	{optRequestsMemory, false, corev1.ResourceMemory},
	{optLimitsCPU, true, corev1.ResourceCPU},
	{optLimitsMemory, true, corev1.ResourceMemory},
}

// resolveResources starts from the policy's resources and applies the annotations, then
// checks that no request exceeds its limit, blaming the more specific of the two settings.
func (r *request) resolveResources(ps, ns annotationSet, p *Policy) error {
	res := *p.Resources.DeepCopy()
	from := map[string]setting{}
	for _, o := range resourceOptions {
		list, field := &res.Requests, "requests"
		if o.limits {
			list, field = &res.Limits, "limits"
		}
		from[field+"/"+string(o.name)] = setting{key: "resources." + field + "." + string(o.name), origin: FromPolicy}
		s, ok := pick(ps, ns, o.opt, "")
		if !ok {
			continue
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[o.name] = s.parsed.(resource.Quantity)
		from[field+"/"+string(o.name)] = s
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okR := res.Requests[name]
		lim, okL := res.Limits[name]
		if !okR || !okL || req.Cmp(lim) <= 0 {
			continue
		}
		rs, ls := from["requests/"+string(name)], from["limits/"+string(name)]
		if ls.origin < rs.origin {
			return errorf(ls.key, ls.origin, "the agent's %s limit %s would be less than its request %s (%s)", name, lim.String(), req.String(), describe(rs.key, rs.origin))
		}
		return errorf(rs.key, rs.origin, "the agent's %s request %s would be more than its limit %s (%s)", name, req.String(), lim.String(), describe(ls.key, ls.origin))
	}
	r.resources = res
	return nil
}

// resolvePort picks the metrics port and checks that no container that runs beside the agent
// declares it: they all share the pod's network namespace. Init containers that run to
// completion are done before the agent starts (it is the last init container, or a regular
// container), so their ports are free by then.
//
// A hostNetwork pod shares the node's network namespace instead: a declared port would become a
// hostPort, and a fixed one would collide with the same agent port of another such pod on the
// node. Unless the pod or its namespace names a port, its agent takes any free port of
// 127.0.0.1 (port 0), which its exec startup probe finds in the state directory.
func (r *request) resolvePort(pod *corev1.Pod, ps, ns annotationSet, p *Policy) error {
	s, ok := pick(ps, ns, optMetricsPort, "")
	switch {
	case ok:
		r.port = s.parsed.(int32)
	case pod.Spec.HostNetwork:
		r.port = 0
		r.warnings = append(r.warnings, fmt.Sprintf("hostNetwork: the agent serves /healthz and /metrics on a free port of the node's 127.0.0.1, not on the pod's IP, and declares no containerPort (it would be a hostPort); set %s to choose the port",
			AnnotationMetricsPort))
		return nil
	default:
		r.port = p.MetricsPort
	}
	var beside []corev1.Container // the containers that run while the agent does
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			beside = append(beside, c)
		}
	}
	for _, c := range append(beside, pod.Spec.Containers...) {
		for _, port := range c.Ports {
			if port.ContainerPort != r.port {
				continue
			}
			if ok {
				return errorf(s.key, s.origin, "port %d is also container %q's port; choose a port that no container of the pod uses", r.port, c.Name)
			}
			return errorf(AnnotationMetricsPort, FromPod, "the agent's metrics port %d (the cluster policy's metricsPort) is also container %q's port; set %s to a port that no container of the pod uses",
				r.port, c.Name, AnnotationMetricsPort)
		}
	}
	return nil
}
