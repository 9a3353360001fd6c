package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/agent"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/webhook"
)

// TestPodShapes sends pods as production has them (meshes, pod-level resources, security
// contexts, host networking, Windows selectors, claim-template and secret-bearing volumes, a
// LimitRange) through the webhook into a real API server, with the cluster policy that the
// chart's default values render, and checks for each that the API server accepts it with the
// agent as intended, or that the webhook refuses it with a message naming what to fix. Pods are
// created with a server-side dry run (all admission, validation included, nothing stored) except
// where a real create says more.
func TestPodShapes(t *testing.T) {
	h := newHelm(t)
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	wo := env.WebhookInstallOptions

	// The policy exactly as the chart's default values render it.
	cm := objectOf[*corev1.ConfigMap](t, h.template(t))
	policy := cm.Data["policy.yaml"]
	if !strings.Contains(policy, "sidecarMode: auto") {
		t.Errorf("the chart's default policy does not say sidecarMode: auto:\n%s", policy)
	}

	cfgW := rest.CopyConfig(cfg)
	warn := &warnings{}
	cfgW.WarningHandler = warn
	cs := kubernetes.NewForConfigOrDie(cfgW)
	ctx := context.Background()

	upstream := map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"}
	createNamespace(t, cs, ownNS, false, nil)
	createNamespace(t, cs, "shapes", true, upstream)
	createNamespace(t, cs, "limited", true, upstream)
	limits := &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "ratio"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:                 corev1.LimitTypeContainer,
			MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
		}}},
	}
	if _, err := cs.CoreV1().LimitRanges("limited").Create(ctx, limits, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	startWebhook(t, cfg, webhook.Options{
		Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		PolicyFile: writePolicy(t, policy),
	})
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	eventually(t, 60*time.Second, "the API server to call the webhook", func() error {
		pod, err := cs.CoreV1().Pods("shapes").Create(ctx, shapePod("probe"), dryRun)
		if err != nil {
			return err
		}
		_, err = agentOf(pod)
		return err
	})

	// Is the LimitRanger admission plugin on? A pod without the agent whose cpu limit is 8 times
	// its request must then be refused; if it is not, the ratio is checked here instead.
	limitRanger := false
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		pod := shapePod("ratio-8", withCPU("25m", "200m"))
		pod.Annotations = nil
		_, err := cs.CoreV1().Pods("limited").Create(ctx, pod, dryRun)
		if err != nil && strings.Contains(err.Error(), "limit to request ratio") {
			limitRanger = true
			break
		}
		if err != nil {
			t.Fatalf("a pod without the agent: %v", err)
		}
		if time.Now().After(deadline) {
			break // accepted all along: the plugin is off
		}
	}
	t.Logf("LimitRanger enforces maxLimitRequestRatio: %v", limitRanger)
	if !limitRanger {
		t.Log("the LimitRanger admission plugin does not refuse a cpu ratio of 8 here: the agent's ratio is checked by the test")
	}

	tests := []struct {
		name      string
		namespace string // default "shapes"
		pod       *corev1.Pod
		create    bool   // a real create instead of a dry run
		denied    string // a part of the refusal; "" when the pod must be accepted
		warning   string // a part of a warning the client must get
		check     func(t *testing.T, pod *corev1.Pod, agent *corev1.Container, cfg *config.Config)
	}{
		{
			name: "chart defaults on this cluster: auto picks a native sidecar",
			pod:  shapePod("defaults"),
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, cfg *config.Config) {
				if a.RestartPolicy == nil || *a.RestartPolicy != corev1.ContainerRestartPolicyAlways {
					t.Errorf("agent restartPolicy %v, want Always (a native sidecar on 1.29+)", a.RestartPolicy)
				}
				if a.StartupProbe == nil || a.StartupProbe.Exec == nil || a.StartupProbe.HTTPGet != nil {
					t.Errorf("startup probe %+v, want an exec probe", a.StartupProbe)
				}
				if req, lim := a.Resources.Requests.Cpu(), a.Resources.Limits.Cpu(); lim.MilliValue() > 4*req.MilliValue() {
					t.Errorf("agent cpu %s/%s: limit more than 4 times the request", req, lim)
				}
			},
		},
		{
			name: "pod-level resources: the agent's are added",
			pod: shapePod("pod-resources", func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
				}
				// The app alone uses the pod's whole request: without the agent's share added,
				// the API server would refuse the pod.
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
			}),
			warning: "spec.resources (pod-level) raised by the agent's own",
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				want := resource.MustParse("200m")
				want.Add(*a.Resources.Requests.Cpu())
				if got := pod.Spec.Resources.Requests.Cpu(); got.Cmp(want) != 0 {
					t.Errorf("pod-level cpu request %s, want %s", got, &want)
				}
			},
		},
		{
			name:   "Istio mesh: istio-init and an istio-proxy native sidecar",
			pod:    shapePod("mesh", mesh),
			create: true,
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				names := containerNames(pod.Spec.InitContainers)
				if want := []string{"istio-init", "istio-proxy", injector.AgentContainer}; !slices.Equal(names, want) {
					t.Errorf("init containers %v, want %v", names, want)
				}
				if a.StartupProbe == nil || a.StartupProbe.Exec == nil {
					t.Fatalf("startup probe %+v, want exec (no network path through the mesh)", a.StartupProbe)
				}
				if got := strings.Join(a.StartupProbe.Exec.Command, " "); !strings.Contains(got, "--probe") {
					t.Errorf("probe command %q, want sidelog-agent --probe", got)
				}
			},
		},
		{
			name:    "hostNetwork: no hostPort, metrics on loopback",
			pod:     shapePod("host-network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
			warning: "hostNetwork: the agent serves /healthz and /metrics on a free port of the node's 127.0.0.1",
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, cfg *config.Config) {
				if len(a.Ports) > 0 {
					t.Errorf("agent ports %+v, want none (each would be a hostPort)", a.Ports)
				}
				if cfg.MetricsAddr != "127.0.0.1:0" {
					t.Errorf("metricsAddr %q, want 127.0.0.1:0", cfg.MetricsAddr)
				}
			},
		},
		{
			name: "Windows by nodeSelector: refused",
			pod: shapePod("windows-selector", func(p *corev1.Pod) {
				p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"}
			}),
			denied: "sidelog.io/tail: the agent runs on Linux only, and the pod's spec.nodeSelector kubernetes.io/os: windows",
		},
		{
			name: "Windows by node affinity: refused",
			pod: shapePod("windows-affinity", func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
						{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}},
					}}},
				}}}
			}),
			denied: "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution (kubernetes.io/os In [windows])",
		},
		{
			name: "fsGroup and runAsUser: the agent runs as the app",
			pod: shapePod("identity", func(p *corev1.Pod) {
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptrTo[int64](1000), RunAsGroup: ptrTo[int64](3000), FSGroup: ptrTo[int64](2000)}
			}),
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				sc := a.SecurityContext
				if sc.RunAsUser == nil || *sc.RunAsUser != 1000 || sc.RunAsGroup == nil || *sc.RunAsGroup != 3000 {
					t.Errorf("agent runs as %v:%v, want 1000:3000", deref(sc.RunAsUser), deref(sc.RunAsGroup))
				}
			},
		},
		{
			name: "an app as root with an fsGroup: a warning naming the group",
			pod: shapePod("root-app", func(p *corev1.Pod) {
				p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptrTo[int64](999)}
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptrTo[int64](0)}
			}),
			warning: `tailed container "app" as root: the agent can read only the files that are readable by all or by group 999`,
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				if u := a.SecurityContext.RunAsUser; u == nil || *u == 0 {
					t.Errorf("agent runAsUser %v, want non-root", deref(u))
				}
			},
		},
		{
			name: "a StatefulSet's pod: logs on a claim-template volume",
			pod: shapePod("web-0", func(p *corev1.Pod) {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "d4c1b6f0-0000-4000-8000-000000000001"}}
				p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "logs-web-0"}}
			}),
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				if m := mountNamed(a, "logs"); m == nil || !m.ReadOnly || m.MountPath != "/var/log/app" {
					t.Errorf("agent mount of the claim %+v, want read-only at /var/log/app", m)
				}
			},
		},
		{
			name: "projected and CSI volumes below a ** glob stay out of the agent",
			pod: shapePod("secret-volumes", func(p *corev1.Pod) {
				p.Annotations[injector.AnnotationTail+".app"] = "/var/log/app/**/*.log"
				p.Spec.ServiceAccountName = "default"
				c := &p.Spec.Containers[0]
				c.VolumeMounts = append(c.VolumeMounts,
					corev1.VolumeMount{Name: "secrets-store", MountPath: "/var/log/app/secrets", ReadOnly: true},
					corev1.VolumeMount{Name: "token", MountPath: "/var/log/app/token"},
					corev1.VolumeMount{Name: "vault", MountPath: "/var/log/app/vault"},
					corev1.VolumeMount{Name: "archive", MountPath: "/var/log/app/archive"})
				p.Spec.Volumes = append(p.Spec.Volumes,
					corev1.Volume{Name: "secrets-store", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
						Driver: "secrets-store.csi.k8s.io", ReadOnly: ptrTo(true), VolumeAttributes: map[string]string{"secretProviderClass": "app"}}}},
					corev1.Volume{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "vault", Path: "token"}}}}}},
					corev1.Volume{Name: "vault", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
					corev1.Volume{Name: "archive", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			}),
			warning: `the CSI (secrets-store.csi.k8s.io) volume "secrets-store" at /var/log/app/secrets in container "app" is below /var/log/app/**/*.log but may hold secrets`,
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				for _, name := range []string{"secrets-store", "token", "vault"} {
					if m := mountNamed(a, name); m != nil {
						t.Errorf("the agent mounts %q at %s", name, m.MountPath)
					}
				}
				if mountNamed(a, "archive") == nil {
					t.Errorf("the agent does not mount the archive volume below the ** glob")
				}
			},
		},
		{
			name:      "a namespace with a LimitRange (maxLimitRequestRatio cpu 4)",
			namespace: "limited",
			pod:       shapePod("limited", withCPU("100m", "200m")),
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				req, lim := a.Resources.Requests.Cpu(), a.Resources.Limits.Cpu()
				if req.IsZero() || lim.MilliValue() > 4*req.MilliValue() {
					t.Errorf("agent cpu %s/%s: ratio above 4", req, lim)
				}
			},
		},
		{
			name: "a log volume at the agent's shared-key mount: refused",
			pod: shapePod("shared-key", func(p *corev1.Pod) {
				p.Annotations[injector.AnnotationTail+".app"] = "/etc/sidelog/shared-key/*.log"
				p.Annotations[injector.AnnotationUpstreamSharedKey] = "fluentd-forward"
				p.Spec.Containers[0].VolumeMounts[0].MountPath = injector.SharedKeyDir
			}),
			denied: "overlaps the agent's own mount of the shared key (sidelog.io/upstream-shared-key) at /etc/sidelog/shared-key",
		},
		{
			name: "logs on /var/run without a service-account token",
			pod: shapePod("var-run", func(p *corev1.Pod) {
				p.Annotations[injector.AnnotationTail+".app"] = "/var/run/app/*.log"
				p.Spec.AutomountServiceAccountToken = ptrTo(false)
				p.Spec.Containers[0].VolumeMounts[0].MountPath = "/var/run"
			}),
		},
		{
			name: "logs on /var/run with the token hidden from the agent: refused",
			pod: shapePod("var-run-token", func(p *corev1.Pod) {
				p.Annotations[injector.AnnotationTail+".app"] = "/var/run/app/*.log"
				p.Spec.Containers[0].VolumeMounts[0].MountPath = "/var/run"
			}),
			denied: "overlaps the agent's own empty service-account token directory",
		},
		{
			name: "a run-to-completion init container on the metrics port",
			pod: shapePod("init-port", func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example.com/migrate:1",
					Ports: []corev1.ContainerPort{{ContainerPort: 2021}}}}
			}),
		},
		{
			name: "subPathExpr: only the variables it needs, plain or fieldRef",
			pod: shapePod("subpathexpr", func(p *corev1.Pod) {
				c := &p.Spec.Containers[0]
				c.Env = []corev1.EnvVar{
					{Name: "GODEBUG", Value: "x509sha1=1"},
					{Name: "SHARD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				}
				c.VolumeMounts[0].SubPathExpr = "$(SHARD)"
			}),
			check: func(t *testing.T, pod *corev1.Pod, a *corev1.Container, _ *config.Config) {
				var names []string
				for _, e := range a.Env {
					names = append(names, e.Name)
				}
				if !slices.Contains(names, "SHARD") || slices.Contains(names, "GODEBUG") {
					t.Errorf("agent env %v, want SHARD and not GODEBUG", names)
				}
			},
		},
		{
			name: "subPathExpr on GODEBUG: refused",
			pod: shapePod("subpathexpr-godebug", func(p *corev1.Pod) {
				c := &p.Spec.Containers[0]
				c.Env = []corev1.EnvVar{{Name: "GODEBUG", Value: "x509sha1=1"}}
				c.VolumeMounts[0].SubPathExpr = "$(GODEBUG)"
			}),
			denied: `refers to $(GODEBUG), a name that would change the agent's runtime, trust roots or loader`,
		},
		{
			name: "subPathExpr on a Secret: refused",
			pod: shapePod("subpathexpr-secret", func(p *corev1.Pod) {
				c := &p.Spec.Containers[0]
				c.Env = []corev1.EnvVar{{Name: "SHARD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}}
				c.VolumeMounts[0].SubPathExpr = "$(SHARD)"
			}),
			denied: "refers to $(SHARD), which the container takes from a secretKeyRef",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := tt.namespace
			if ns == "" {
				ns = "shapes"
			}
			opts := dryRun
			if tt.create {
				opts = metav1.CreateOptions{}
			}
			warn.take()
			pod, err := cs.CoreV1().Pods(ns).Create(ctx, tt.pod, opts)
			got := warn.take()
			if tt.denied != "" {
				want := `admission webhook "` + webhook.WebhookName + `" denied the request: `
				if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tt.denied) {
					t.Fatalf("error = %v, want the webhook's refusal containing %q", err, tt.denied)
				}
				return
			}
			if err != nil {
				t.Fatalf("the API server refused the injected pod: %v", err)
			}
			if tt.create {
				if pod, err = cs.CoreV1().Pods(ns).Get(ctx, tt.pod.Name, metav1.GetOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := agentOf(pod)
			if err != nil {
				t.Fatalf("%v: the pod was not injected", err)
			}
			a := agentContainerOf(pod)
			if tt.warning != "" && !slices.ContainsFunc(got, func(w string) bool { return strings.Contains(w, tt.warning) }) {
				t.Errorf("warnings %q, want one containing %q", got, tt.warning)
			}
			if ns == "limited" && !limitRanger {
				checkRatio(t, pod, 4)
			}
			if tt.check != nil {
				tt.check(t, pod, a, cfg)
			}
		})
	}
}

// shapePod is a pod in the shape most tests start from: one container "app" with its logs on
// emptyDir "logs" at /var/log/app, tailed; muts change it.
func shapePod(name string, muts ...func(*corev1.Pod)) *corev1.Pod {
	p := appPod(name, tail())
	for _, m := range muts {
		m(p)
	}
	return p
}

// withCPU gives every container of the pod a cpu request and limit (the LimitRange's ratio
// applies to every container, the app's too).
func withCPU(req, lim string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req)},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lim)},
			}
		}
	}
}

// mesh gives the pod what Istio's injector adds: istio-init (a plain init container that sets up
// iptables and declares, here, the agent's port) and istio-proxy (a native sidecar), with the
// app's probes rewritten to the proxy's port.
func mesh(p *corev1.Pod) {
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.ServiceAccountName = "default" // a token projection needs one; envtest does not default it
	p.Spec.InitContainers = []corev1.Container{
		{Name: "istio-init", Image: "docker.io/istio/proxyv2:1.24.0", Args: []string{"istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"},
			Ports: []corev1.ContainerPort{{ContainerPort: 2021, Name: "scratch"}}},
		{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.24.0", RestartPolicy: &always,
			Ports:           []corev1.ContainerPort{{ContainerPort: 15090, Name: "http-envoy-prom"}},
			SecurityContext: &corev1.SecurityContext{RunAsUser: ptrTo[int64](1337), RunAsGroup: ptrTo[int64](1337)},
			VolumeMounts:    []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"}, {Name: "istio-token", MountPath: "/var/run/secrets/tokens"}}},
	}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/app-health/app/readyz", Port: intstr.FromInt32(15020)}}}
	p.Spec.Volumes = append(p.Spec.Volumes,
		corev1.Volume{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		corev1.Volume{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: ptrTo[int64](43200), Path: "istio-token"}}}}}})
}

func agentContainerOf(pod *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == injector.AgentContainer {
				return &cs[i]
			}
		}
	}
	return nil
}

func mountNamed(c *corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// checkRatio checks what LimitRanger would: every container's cpu limit is at most ratio
// times its request.
func checkRatio(t *testing.T, pod *corev1.Pod, ratio int64) {
	t.Helper()
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		req, lim := c.Resources.Requests.Cpu(), c.Resources.Limits.Cpu()
		if req.IsZero() || lim.MilliValue() > ratio*req.MilliValue() {
			t.Errorf("container %q cpu %s/%s: limit more than %d times the request", c.Name, req, lim, ratio)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// TestAgentProbeBinary runs the built agent and its --probe as the injected startup probe does:
// the probe passes once the agent listens, on a fixed port and on any free port of loopback
// (the hostNetwork case), and fails when no agent runs.
func TestAgentProbeBinary(t *testing.T) {
	bin := binary(t, "sidelog-agent")
	stateDir := t.TempDir()
	doc, err := json.Marshal(config.Config{
		Version:     config.Version,
		Inputs:      []config.Input{{Container: "app", Paths: []string{filepath.Join(t.TempDir(), "*.log")}}},
		Upstream:    config.Upstream{Servers: []string{freeAddr(t)}},
		MetricsAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), config.Env+"="+string(doc), config.EnvPodName+"=web", config.EnvPodNamespace+"=shop",
		config.EnvPodUID+"=d4c1b6f0-0000-4000-8000-000000000002", config.EnvNodeName+"=node-1")
	probe := func() error {
		cmd := exec.Command(bin, "--probe", "--state-dir="+stateDir)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return &probeError{err: err, out: string(out)}
		}
		return nil
	}
	if err := probe(); err == nil {
		t.Fatalf("--probe passed with no agent running")
	}
	cmd := exec.Command(bin, "--state-dir="+stateDir)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 30*time.Second, "sidelog-agent --probe to pass", probe)
	if _, err := os.Stat(filepath.Join(stateDir, agent.AddrFile)); err != nil {
		t.Errorf("the agent wrote no %s: %v", agent.AddrFile, err)
	}
}

type probeError struct {
	err error
	out string
}

func (e *probeError) Error() string { return e.err.Error() + ": " + e.out }
