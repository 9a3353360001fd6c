// Package localpod runs one container of a pod as a local process, the way a kubelet would start
// it: its command and args, its environment with downward-API values taken from the pod, and its
// volumes as directories on this machine. The demo and the end-to-end tests use it to run the
// injected agent exactly as the injector configured it, without a kubelet.
//
// A process here has no mount namespace, so a volume's mount path is emulated by rewriting it to
// the volume's directory wherever it appears in the command, the args and the environment. Mount
// a volume at a path that is already that directory (as the tests do for log volumes) and nothing
// needs rewriting.
package localpod

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Container returns the container or init container called name.
func Container(pod *corev1.Pod, name string) (*corev1.Container, error) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("pod %s/%s has no container %q", pod.Namespace, pod.Name, name)
}

// Options say where things are on this machine.
type Options struct {
	// Binaries maps a container's command[0] (e.g. "/sidelog-agent") to a local executable.
	Binaries map[string]string
	// VolumeDirs maps a volume name to its directory. A volume without an entry gets a new
	// directory under ScratchDir (emptyDir and downwardAPI volumes need none).
	VolumeDirs map[string]string
	// ScratchDir holds the directories of volumes not in VolumeDirs.
	ScratchDir string
	// PodIP is what status.podIP resolves to; default 127.0.0.1.
	PodIP string
}

// TerminationMessageFile is the file that stands for the terminationMessagePath of container
// name: what the process writes there is what the kubelet would report as its termination
// message (up to 4096 bytes).
func TerminationMessageFile(o Options, name string) string {
	return filepath.Join(o.ScratchDir, "termination-message", name)
}

// Command builds the process for container name of pod. The pod should be the one the API server
// returned, so that metadata.uid is real.
func Command(pod *corev1.Pod, name string, o Options) (*exec.Cmd, error) {
	c, err := Container(pod, name)
	if err != nil {
		return nil, err
	}
	if len(c.Command) == 0 {
		return nil, fmt.Errorf("container %q has no command (image entrypoints cannot be known here)", name)
	}
	bin, ok := o.Binaries[c.Command[0]]
	if !ok {
		return nil, fmt.Errorf("container %q: no local binary for command %q", name, c.Command[0])
	}

	dirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir, ok := o.VolumeDirs[v.Name]
		if !ok {
			dir = filepath.Join(o.ScratchDir, "volumes", v.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
		}
		if v.DownwardAPI != nil {
			if err := writeDownwardAPI(pod, v.DownwardAPI, dir); err != nil {
				return nil, fmt.Errorf("volume %q: %w", v.Name, err)
			}
		}
		dirs[v.Name] = dir
	}
	var mounts [][2]string // mount path → local directory
	for _, m := range c.VolumeMounts {
		dir, ok := dirs[m.Name]
		if !ok {
			return nil, fmt.Errorf("container %q mounts %q, which is not a volume of the pod", name, m.Name)
		}
		mounts = append(mounts, [2]string{m.MountPath, filepath.Join(dir, m.SubPath)})
	}
	// The kubelet mounts a file of its own at the terminationMessagePath and reads it when the
	// container ended; here it is TerminationMessageFile, created empty unless it exists (a probe
	// run in the container must not empty it).
	tm := TerminationMessageFile(o, name)
	if err := os.MkdirAll(filepath.Dir(tm), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(tm, os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		return nil, err
	}
	f.Close()
	mounts = append(mounts, [2]string{cmp.Or(c.TerminationMessagePath, corev1.TerminationMessagePathDefault), tm})
	// Longest mount path first, so /a/b wins over /a.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i][0]) > len(mounts[j][0]) })
	rewrite := func(s string) string {
		for _, m := range mounts {
			if m[0] != m[1] {
				s = strings.ReplaceAll(s, m[0], m[1])
			}
		}
		return s
	}

	env := []string{"PATH=" + os.Getenv("PATH")}
	vars := map[string]string{}
	for _, e := range c.Env {
		v, err := envValue(pod, c, e, o)
		if err != nil {
			return nil, fmt.Errorf("container %q env %s: %w", name, e.Name, err)
		}
		v = rewrite(v)
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	cmd := exec.Command(bin)
	cmd.Args = append([]string{bin}, c.Command[1:]...)
	cmd.Args = append(cmd.Args, c.Args...)
	for i := range cmd.Args[1:] {
		cmd.Args[i+1] = rewrite(expand(cmd.Args[i+1], vars))
	}
	cmd.Env = env
	return cmd, nil
}

var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with the container's variable as the kubelet does in command and args:
// an undefined reference stays as written, and $$ is a literal $.
func expand(s string, vars map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		if v, ok := vars[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

func envValue(pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, o Options) (string, error) {
	if e.ValueFrom == nil {
		return e.Value, nil
	}
	if r := e.ValueFrom.ResourceFieldRef; r != nil {
		return resourceValue(pod, c, r)
	}
	if e.ValueFrom.FieldRef == nil {
		return "", fmt.Errorf("only value, fieldRef and resourceFieldRef are supported")
	}
	return fieldValue(pod, e.ValueFrom.FieldRef.FieldPath, o)
}

// resourceValue is a request or limit of container r.ContainerName (empty: c, the container
// started) divided by the divisor and rounded up, as the kubelet writes it. A resource the
// container does not declare is an error here: the kubelet would give the node's allocatable
// amount, which this machine does not have.
func resourceValue(pod *corev1.Pod, c *corev1.Container, r *corev1.ResourceFieldSelector) (string, error) {
	if r.ContainerName != "" {
		var err error
		if c, err = Container(pod, r.ContainerName); err != nil {
			return "", err
		}
	}
	var list corev1.ResourceList
	kind, name, _ := strings.Cut(r.Resource, ".")
	switch kind {
	case "limits":
		list = c.Resources.Limits
	case "requests":
		list = c.Resources.Requests
	default:
		return "", fmt.Errorf("resource %q is not supported", r.Resource)
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "", fmt.Errorf("container %q declares no %s", c.Name, r.Resource)
	}
	div := r.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	// Ceil(q / div), in milli-units so that cpu divisors such as 1m work.
	n, d := q.MilliValue(), div.MilliValue()
	return strconv.FormatInt((n+d-1)/d, 10), nil
}

func fieldValue(pod *corev1.Pod, path string, o Options) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		if o.PodIP != "" {
			return o.PodIP, nil
		}
		return "127.0.0.1", nil
	case "metadata.labels":
		return keyValues(pod.Labels), nil
	case "metadata.annotations":
		return keyValues(pod.Annotations), nil
	}
	return "", fmt.Errorf("field %q is not supported", path)
}

// keyValues renders a map as the kubelet does in downward-API files: sorted key="value" lines.
func keyValues(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k + "=" + strconv.Quote(m[k]))
	}
	return b.String()
}

func writeDownwardAPI(pod *corev1.Pod, v *corev1.DownwardAPIVolumeSource, dir string) error {
	for _, item := range v.Items {
		if item.FieldRef == nil {
			return fmt.Errorf("item %q: only fieldRef is supported", item.Path)
		}
		val, err := fieldValue(pod, item.FieldRef.FieldPath, Options{})
		if err != nil {
			return fmt.Errorf("item %q: %w", item.Path, err)
		}
		p := filepath.Join(dir, item.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
			return err
		}
	}
	return nil
}
