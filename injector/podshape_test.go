package injector

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestAgentIdentity pins who the agent runs as under each Policy.AgentIdentity, and when the
// injector warns that it cannot know the agent can read the files.
func TestAgentIdentity(t *testing.T) {
	id := func(v int64) *int64 { return &v }
	tests := []struct {
		name     string
		identity string
		pod      *corev1.PodSecurityContext
		app      *corev1.SecurityContext
		uid, gid *int64
		warn     string // a part of the warning; "" for none
	}{
		{"app: no uid anywhere", IdentityApp, nil, nil, id(65532), id(65532), `"app" as its image's user`},
		{"app: the app's uid and gid", IdentityApp, nil, &corev1.SecurityContext{RunAsUser: id(1000), RunAsGroup: id(3000)}, id(1000), id(3000), ""},
		{"app: pod-level uid, no gid", IdentityApp, &corev1.PodSecurityContext{RunAsUser: id(1000)}, nil, id(1000), id(65532), ""},
		{"app: root", IdentityApp, nil, &corev1.SecurityContext{RunAsUser: id(0)}, id(65532), id(65532), `"app" as root`},
		{"app: root with fsGroup", IdentityApp, &corev1.PodSecurityContext{FSGroup: id(999)}, &corev1.SecurityContext{RunAsUser: id(0)}, id(65532), id(65532), "or by group 999 (the pod's fsGroup"},
		{"fixed: the app's uid is not taken", IdentityFixed, nil, &corev1.SecurityContext{RunAsUser: id(1000)}, id(65532), id(65532), `"app" as uid 1000`},
		{"platform: nothing set", IdentityPlatform, nil, nil, nil, nil, ""},
		{"platform: the app's uid", IdentityPlatform, nil, &corev1.SecurityContext{RunAsUser: id(1000700000)}, id(1000700000), nil, ""},
		{"platform: a root app", IdentityPlatform, nil, &corev1.SecurityContext{RunAsUser: id(0)}, nil, nil, "the agent runs as the platform's uid"},
		{"platform: a root pod", IdentityPlatform, &corev1.PodSecurityContext{RunAsUser: id(0)}, nil, id(65532), nil, `the agent runs as uid 65532 and tailed container "app" as root`},
		{"platform: two containers, a pod-level uid and another", IdentityPlatform, &corev1.PodSecurityContext{RunAsUser: id(1000)}, &corev1.SecurityContext{RunAsUser: id(2000)}, nil, nil, `the agent runs as the pod's uid 1000`},
		{"app: two containers, two uids", IdentityApp, nil, &corev1.SecurityContext{RunAsUser: id(1000)}, id(65532), id(65532),
			`tailed containers "app" as uid 1000, "worker" as its image's user`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod(tailApp())
			if strings.Contains(tt.name, "two containers") {
				pod.Annotations[AnnotationTail+".worker"] = "/work/*.log"
			}
			pod.Spec.SecurityContext = tt.pod
			pod.Spec.Containers[0].SecurityContext = tt.app
			p, err := ParsePolicy([]byte("agentIdentity: " + tt.identity))
			if err != nil {
				t.Fatal(err)
			}
			out, o, err := Inject(pod, nil, p)
			if err != nil {
				t.Fatal(err)
			}
			sc := agentOf(out).SecurityContext
			if !equalID(sc.RunAsUser, tt.uid) || !equalID(sc.RunAsGroup, tt.gid) {
				t.Errorf("runAsUser %v, runAsGroup %v; want %v, %v", show(sc.RunAsUser), show(sc.RunAsGroup), show(tt.uid), show(tt.gid))
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("runAsNonRoot is not true")
			}
			var warned string
			for _, w := range o.Warnings {
				if strings.HasPrefix(w, "the agent runs as") {
					warned = w
				}
			}
			switch {
			case tt.warn == "" && warned != "":
				t.Errorf("warning %q, want none", warned)
			case tt.warn != "" && !strings.Contains(warned, tt.warn):
				t.Errorf("warning %q, want one containing %q", warned, tt.warn)
			}
		})
	}
}

func equalID(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func show(v *int64) any {
	if v == nil {
		return "unset"
	}
	return *v
}

func TestMatchesBelow(t *testing.T) {
	tests := []struct {
		glob, dir string
		want      bool
	}{
		{"/var/log/app/*.log", "/var/log/app/archive", false},
		{"/var/log/app/**/*.log", "/var/log/app/archive", true},
		{"/var/log/app/**", "/var/log/app/a/b", true},
		{"/var/log/app/*/*.log", "/var/log/app/archive", true},
		{"/var/log/app/*/*.log", "/var/log/app/archive/old", false},
		{"/var/log/app/web-*/*.log", "/var/log/app/db-0", false},
		{"/var/log/app/web-*/*.log", "/var/log/app/web-0", true},
		{"/var/log/app/current.log", "/var/log/app/current.log", false},
	}
	for _, tt := range tests {
		if got := matchesBelow(tt.glob, tt.dir); got != tt.want {
			t.Errorf("matchesBelow(%q, %q) = %v, want %v", tt.glob, tt.dir, got, tt.want)
		}
	}
}

// TestCheckLinuxAccepts: pods that may land on Linux nodes are injected.
func TestCheckLinuxAccepts(t *testing.T) {
	in := func(values ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: values}}}
	}
	for name, mutate := range map[string]func(*corev1.Pod){
		"spec.os linux":      func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Linux} },
		"nodeSelector linux": func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "linux"} },
		"one affinity term allows linux": func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{in("windows"), in("linux", "windows")},
			}}}
		},
		"preferred affinity only": func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
				{Weight: 1, Preference: in("windows")},
			}}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			pod := basePod(tailApp())
			mutate(pod)
			if _, o, err := Inject(pod, nil, nil); err != nil || !o.Injected {
				t.Errorf("Inject = %+v, %v; want injected", o, err)
			}
		})
	}
}

// TestPodResources: the agent's requests and limits are added to each pod-level resource the
// pod sets, and to no other.
func TestPodResources(t *testing.T) {
	pod := basePod(tailApp())
	pod.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	out, o, err := Inject(pod, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := out.Spec.Resources
	if got := r.Requests.Cpu().String(); got != "1050m" {
		t.Errorf("pod requests.cpu = %s, want 1050m", got)
	}
	if got := r.Limits.Memory().String(); got != "1152Mi" {
		t.Errorf("pod limits.memory = %s, want 1152Mi", got)
	}
	if _, ok := r.Requests[corev1.ResourceMemory]; ok {
		t.Errorf("pod requests.memory set: %v", r.Requests)
	}
	if _, ok := r.Limits[corev1.ResourceCPU]; ok {
		t.Errorf("pod limits.cpu set: %v", r.Limits)
	}
	if got := strings.Join(o.Warnings, "\n"); !strings.Contains(got, "spec.resources (pod-level) raised by the agent's own: requests.cpu 1 to 1050m, limits.memory 1Gi to 1152Mi") {
		t.Errorf("warnings = %q", got)
	}
	if pod.Spec.Resources.Requests.Cpu().String() != "1" {
		t.Errorf("Inject changed its input's resources")
	}
}
