package injector

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

// The agent container and the volumes that are its own.
const (
	// AgentContainer is the name of the agent container; a pod may not use it for its own.
	AgentContainer = "sidelog-agent"
	// StateVolume is the pod-local emptyDir for the agent's checkpoints, mounted at StateDir.
	// A restarted agent resumes from it; another pod never sees it.
	StateVolume = "sidelog-state"
	StateDir    = "/var/lib/sidelog"
	// PodInfoVolume is a downward-API volume with the pod's labels, mounted at PodInfoDir.
	PodInfoVolume = "sidelog-podinfo"
	PodInfoDir    = "/etc/sidelog/podinfo"
	// LabelsFile is the labels file of PodInfoVolume (key="value" lines).
	LabelsFile = PodInfoDir + "/labels"
	// NoTokenVolume is an empty volume mounted read-only over TokenDir in the agent alone. The
	// agent needs no Kubernetes API access, but automountServiceAccountToken is pod-wide and the
	// app may need its token. The ServiceAccount admission plugin skips containers that already
	// have a mount at TokenDir, so pods made from `sidelog inject` output get no token in the
	// agent; behind the webhook the plugin has run before (it precedes mutating webhooks), and
	// the mount keeps the agent tokenless should that order ever change. Not added when the
	// pod sets automountServiceAccountToken: false.
	NoTokenVolume = "sidelog-no-token"
	TokenDir      = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// agentCommand and agentArgs start the agent; its configuration comes from config.Env.
var (
	agentCommand = []string{"/sidelog-agent"}
	agentArgs    = []string{"--state-dir=" + StateDir}
)

// metricsPortName names the agent's port; at most 15 characters.
const metricsPortName = "sidelog-metrics"

// agentEnv are the agent's own variables: the pod's identity from the downward API.
var agentEnv = map[string]corev1.EnvVar{
	config.EnvPodName:      fieldEnv(config.EnvPodName, "metadata.name"),
	config.EnvPodNamespace: fieldEnv(config.EnvPodNamespace, "metadata.namespace"),
	config.EnvPodUID:       fieldEnv(config.EnvPodUID, "metadata.uid"),
	config.EnvNodeName:     fieldEnv(config.EnvNodeName, "spec.nodeName"),
	config.Env:             {Name: config.Env},
	// The agent's own memory limit in bytes, from which it sets the Go runtime's soft limit. No
	// containerName: empty means the container itself to every kubelet, whereas a lookup by name
	// searched only the regular containers in older kubelets, and the native sidecar is an init
	// container.
	config.EnvMemoryLimit: {Name: config.EnvMemoryLimit, ValueFrom: &corev1.EnvVarSource{
		ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1")},
	}},
}

func fieldEnv(name, field string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: field},
	}}
}

// reservedVolumes are the names of the volumes the injector adds; a pod may not use them.
var reservedVolumes = []string{StateVolume, PodInfoVolume, NoTokenVolume, UpstreamCAVolume, SharedKeyVolume, UserVolume, UpstreamHeadersVolume}

// maxConfigBytes bounds the agent's configuration, which travels in the environment variable
// config.Env: Linux refuses to start a program with a variable longer than 128 KiB ("argument
// list too long"), which would leave the pod's agent, and with a native sidecar the whole pod,
// never started. Half that leaves room for what the variable's name and the runtime add.
const maxConfigBytes = 64 << 10

// agentConfig is the document the agent reads from config.Env. workloadWarning says what of w it
// could not carry: an admission warning, kept out of the status, which says what the injector did
// with what the pod asked for (as SetWorkload's are).
func agentConfig(pod *corev1.Pod, r *request, p *Policy, w Workload) (b []byte, warnings []string, workloadWarning string, err error) {
	drain, shortened := drainTimeout(p.DrainTimeout.D(), pod.Spec.TerminationGracePeriodSeconds)
	if shortened {
		warnings = append(warnings, fmt.Sprintf("terminationGracePeriodSeconds %d leaves too little time for the cluster policy's drainTimeout %s: the agent drains for at most %s",
			*pod.Spec.TerminationGracePeriodSeconds, p.DrainTimeout.D(), drain))
	}
	c := config.Config{
		Version:      config.Version,
		Upstream:     config.Upstream{Servers: slices.Clone(r.upstream), Mode: p.UpstreamMode},
		Limits:       p.AgentLimits,
		DrainTimeout: config.Duration(drain),
		LabelsFile:   LabelsFile,
		MetricsAddr:  metricsAddr(pod, r),
	}
	upstreamConfig(r.security, &c.Upstream)
	for _, in := range r.inputs {
		var ml *config.Multiline
		if in.multiline != nil {
			ml = &config.Multiline{Preset: in.multiline.Preset, FirstLine: in.multiline.FirstLine}
		}
		name := pod.Spec.Containers[in.container].Name
		readFrom := in.readFrom
		if readFrom == ReadFromAuto {
			var lasting, fresh string
			readFrom, lasting, fresh = readFromAuto(pod, in.container, in.paths)
			if lasting != "" && fresh != "" {
				warnings = append(warnings, fmt.Sprintf("%s: container %q logs to volume %q, which outlives the pod, and to %q, which does not: files that exist when the agent starts, without a checkpoint, are read from their end on both (files created later are read whole); set %s.%s: head or tail to choose",
					in.tail.key, name, lasting, fresh, AnnotationReadFrom, name))
			}
		}
		if readFrom == config.ReadFromHead {
			// The agent's default: left out, so that agents injected before readFrom existed
			// are not reported as stale by sidelog inject.
			readFrom = ""
		}
		c.Inputs = append(c.Inputs, config.Input{
			Container:   name,
			Paths:       slices.Clone(in.paths),
			Exclude:     slices.Clone(in.exclude),
			Multiline:   ml,
			Parser:      in.parser,
			ReadFrom:    readFrom,
			IgnoreOlder: in.ignoreOlder,
			TimeKey:     in.timeKey,
			TimeFormat:  in.timeFormat,
			RateLimit:   in.rateLimit,
		})
		if len(in.cleanup) > 0 {
			last := &c.Inputs[len(c.Inputs)-1]
			last.Cleanup, last.CleanupSettle = slices.Clone(in.cleanup), p.CleanupSettle
		}
	}
	if w.Owners != nil || w.NamespaceLabels != nil {
		// What the cluster says about the pod: when the agent could not take it, the pod
		// goes without it, never refused (SetWorkload's checks).
		b, labelsLeftOut, err := withWorkload(c, w)
		if err == nil {
			if labelsLeftOut != nil {
				workloadWarning = workloadLeftOut(labelsLeftOut)
			}
			return b, warnings, workloadWarning, nil
		}
		workloadWarning = workloadLeftOut(err)
	}
	// The annotations were checked one by one; this checks that together they make a document
	// the agent accepts, so a pod is never started with an agent that refuses to run.
	if err := c.Validate(); err != nil {
		return nil, nil, "", fmt.Errorf("injector: the agent config would be invalid: %w", err)
	}
	b, err = c.Encode()
	if err != nil {
		return nil, nil, "", fmt.Errorf("injector: encoding the agent config: %w", err)
	}
	if len(b) > maxConfigBytes {
		return nil, nil, "", &Error{Message: fmt.Sprintf("the agent's configuration would be %d bytes, more than the %d an environment variable can safely carry: use fewer or shorter %s, %s and %s values",
			len(b), maxConfigBytes, AnnotationTail, AnnotationExclude, AnnotationMultiline)}
	}
	return b, warnings, workloadWarning, nil
}

// agentContainer builds the agent. It runs as non-root with a read-only root file system, no
// capabilities, no privilege escalation and the RuntimeDefault seccomp profile, and mounts the
// app's log volumes read-only, but for those a cleanup glob needs (AnnotationCleanup).
func agentContainer(pod *corev1.Pod, r *request, lm *logMounts, p *Policy, cfg []byte, noToken bool) corev1.Container {
	env := []corev1.EnvVar{
		agentEnv[config.EnvPodName],
		agentEnv[config.EnvPodNamespace],
		agentEnv[config.EnvPodUID],
		agentEnv[config.EnvNodeName],
	}
	// Only for a limit the pod declares: without one, the kubelet would give the node's
	// allocatable memory, which says nothing about what the agent may use.
	if lim, ok := r.resources.Limits[corev1.ResourceMemory]; ok && !lim.IsZero() {
		mem := agentEnv[config.EnvMemoryLimit]
		env = append(env, *mem.DeepCopy())
	}
	env = append(env, lm.env...)
	env = append(env, corev1.EnvVar{Name: config.Env, Value: string(cfg)})
	// The agent's delivery receipt goes to its termination message, which the kubelet puts in the
	// pod's status. FallbackToLogsOnError still uses the file when the agent wrote it, and the end
	// of the agent's log when it died before it could (a panic).
	env = append(env, corev1.EnvVar{Name: config.EnvReceiptFile, Value: corev1.TerminationMessagePathDefault},
		corev1.EnvVar{Name: config.EnvReceiptMaxBytes, Value: strconv.Itoa(receiptMaxBytes(pod))})

	mounts := []corev1.VolumeMount{
		{Name: StateVolume, MountPath: StateDir},
		{Name: PodInfoVolume, MountPath: PodInfoDir, ReadOnly: true},
	}
	if noToken {
		mounts = append(mounts, corev1.VolumeMount{Name: NoTokenVolume, MountPath: TokenDir, ReadOnly: true})
	}
	_, secretMounts := upstreamVolumes(r.security)
	mounts = append(mounts, secretMounts...)
	mounts = append(mounts, lm.mounts...)

	c := corev1.Container{
		Name:            AgentContainer,
		Image:           p.AgentImage,
		ImagePullPolicy: p.ImagePullPolicy,
		Command:         slices.Clone(agentCommand),
		Args:            slices.Clone(agentArgs),
		Env:             env,

		Resources:                r.resources, // the request's own copy of the policy's
		VolumeMounts:             mounts,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                r.uid,
			RunAsGroup:               r.gid,
			RunAsNonRoot:             ptr(true),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Ports: agentPorts(pod, r),
	}
	if r.mode == ModeNative {
		c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
		c.StartupProbe = startupProbe(p)
	}
	return c
}

// laterContainers is how many containers the injector expects webhooks that run after it to add
// (a mesh's proxy and its init container), for receiptMaxBytes.
const laterContainers = 2

// receiptMaxBytes is the most the agent's receipt may take for the kubelet to keep it whole: the
// kubelet shares 12 KiB among the pod's containers and init containers, the agent and
// laterContainers included.
func receiptMaxBytes(pod *corev1.Pod) int {
	return receipt.Limit(len(pod.Spec.Containers) + len(pod.Spec.InitContainers) + 1 + laterContainers)
}

// agentPorts declares the metrics port, except in a hostNetwork pod, where it would be a
// hostPort on the node (see resolvePort).
func agentPorts(pod *corev1.Pod, r *request) []corev1.ContainerPort {
	if pod.Spec.HostNetwork {
		return nil
	}
	return []corev1.ContainerPort{{Name: metricsPortName, ContainerPort: r.port, Protocol: corev1.ProtocolTCP}}
}

// metricsAddr is where the agent serves /healthz and /metrics: every address of the pod, or the
// node's loopback for a hostNetwork pod (see resolvePort).
func metricsAddr(pod *corev1.Pod, r *request) string {
	if pod.Spec.HostNetwork {
		return fmt.Sprintf("127.0.0.1:%d", r.port)
	}
	return fmt.Sprintf(":%d", r.port)
}

// startupProbe is the native sidecar's startup probe. The kubelet starts the app containers
// only once it passed: with it, the agent is up (its SIGTERM handler installed) before the app
// writes its first line, so even a Job that ends at once is shipped whole. It runs the agent
// binary, which asks its own /healthz over loopback: a kubelet httpGet would cross the pod
// network, where a mesh's STRICT mTLS refuses plaintext (and the mesh's probe rewriting ran
// before the agent was added).
func startupProbe(p *Policy) *corev1.Probe {
	if p.StartupProbe == ProbeNone {
		return nil
	}
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
			Command: slices.Concat(agentCommand, []string{"--probe"}, agentArgs),
		}},
		PeriodSeconds:    1,
		TimeoutSeconds:   2,
		FailureThreshold: 30,
	}
}

// agentVolumes are the agent's own volumes.
func agentVolumes(r *request, noToken bool) []corev1.Volume {
	vols := []corev1.Volume{
		{Name: StateVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: PodInfoVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "labels",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.labels"},
			}},
		}}},
	}
	if noToken {
		vols = append(vols, corev1.Volume{Name: NoTokenVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	secrets, _ := upstreamVolumes(r.security)
	return append(vols, secrets...)
}

func ptr[T any](v T) *T { return &v }
