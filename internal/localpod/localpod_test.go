package localpod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "uid-1", Labels: map[string]string{"b": "2", "a": "x\"y"}},
		Spec: corev1.PodSpec{
			NodeName: "node-1",
			Volumes: []corev1.Volume{
				{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				}}}},
			},
			InitContainers: []corev1.Container{{
				Name:    "agent",
				Command: []string{"/agent"},
				Args:    []string{"--state-dir=/var/lib/state", "--node=$(NODE)", "--undefined=$(NOPE)", "--literal=$$(NODE)"},
				Env: []corev1.EnvVar{
					{Name: "CONFIG", Value: `{"labels":"/etc/info/labels","logs":"` + dir + `/logs/*.log"}`},
					{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
					{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
					{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
						Resource: "limits.memory", Divisor: resource.MustParse("1")}}},
					{Name: "CPU_M", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
						ContainerName: "agent", Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
					{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
						ContainerName: "agent", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("25m")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "logs", MountPath: dir + "/logs"},
					{Name: "state", MountPath: "/var/lib/state"},
					{Name: "info", MountPath: "/etc/info"},
				},
			}},
		},
	}
	cmd, err := Command(pod, "agent", Options{
		Binaries:   map[string]string{"/agent": "/bin/true"},
		VolumeDirs: map[string]string{"logs": dir + "/logs"},
		ScratchDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []string{"/bin/true", "--state-dir=" + dir + "/volumes/state", "--node=node-1", "--undefined=$(NOPE)", "--literal=$(NODE)"}
	if !slices.Equal(cmd.Args, wantArgs) {
		t.Errorf("args = %q, want %q", cmd.Args, wantArgs)
	}
	for _, want := range []string{
		`CONFIG={"labels":"` + dir + `/volumes/info/labels","logs":"` + dir + `/logs/*.log"}`,
		"POD_UID=uid-1",
		"NODE=node-1",
		"MEM=134217728",
		"CPU_M=25",
		"MEM_MI=128",
	} {
		if !slices.Contains(cmd.Env, want) {
			t.Errorf("env lacks %q; env = %q", want, cmd.Env)
		}
	}
	labels, err := os.ReadFile(filepath.Join(dir, "volumes/info/labels"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(labels), "a=\"x\\\"y\"\nb=\"2\""; got != want {
		t.Errorf("labels file = %q, want %q", got, want)
	}

	if _, err := Command(pod, "nope", Options{}); err == nil || !strings.Contains(err.Error(), `no container "nope"`) {
		t.Errorf("unknown container: err = %v", err)
	}
	if _, err := Command(pod, "agent", Options{ScratchDir: dir}); err == nil || !strings.Contains(err.Error(), "no local binary") {
		t.Errorf("unknown binary: err = %v", err)
	}
}

// TestTerminationMessagePath: the container's terminationMessagePath (the API's default when it
// sets none) stands for a local file that exists before the process starts, as the kubelet's
// mount does, and that a second start (a probe in the same container) does not empty.
func TestTerminationMessagePath(t *testing.T) {
	for _, path := range []string{"", "/dev/termination-log", "/tmp/message"} {
		dir := t.TempDir()
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:                   "agent",
			Command:                []string{"/agent"},
			Env:                    []corev1.EnvVar{{Name: "RECEIPT", Value: path}},
			TerminationMessagePath: path,
		}}}}
		if path == "" {
			pod.Spec.Containers[0].Env[0].Value = corev1.TerminationMessagePathDefault
		}
		o := Options{Binaries: map[string]string{"/agent": "/bin/true"}, ScratchDir: dir}
		cmd, err := Command(pod, "agent", o)
		if err != nil {
			t.Fatal(err)
		}
		file := TerminationMessageFile(o, "agent")
		if !slices.Contains(cmd.Env, "RECEIPT="+file) {
			t.Errorf("path %q: env %q, want RECEIPT=%s", path, cmd.Env, file)
		}
		if err := os.WriteFile(file, []byte("receipt"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Command(pod, "agent", o); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(file); string(b) != "receipt" {
			t.Errorf("path %q: a second start left %q in the file", path, b)
		}
	}
}
