package injector

import (
	"cmp"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/sidecar/config"
)

// The agent sees the app's files through the app's own volumes, mounted read-only at the same
// paths, so the globs of the annotations mean the same in both containers. This file finds
// those volumes.

// logVolumePrefix names the emptyDir volumes added for log paths that were on no volume
// (Policy.MissingVolume "emptyDir"), numbered from 0.
const logVolumePrefix = "sidelog-logs-"

// systemDirs are directories that an added emptyDir would hide the image's files in; a log
// path whose directory is one of them, or is below one of pseudoFS, must be on a volume the
// user mounted.
var systemDirs = []string{
	"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
	"/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",
	"/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share",
	"/var", "/var/cache", "/var/lib", "/var/run",
}

var pseudoFS = []string{"/proc", "/sys", "/dev"}

// logMounts collects the agent's mounts of the app's log volumes.
type logMounts struct {
	pod    *corev1.Pod // the copy being mutated: missing volumes are added to it
	policy *Policy
	// mounts are the agent's log mounts, in the order they were needed.
	mounts []corev1.VolumeMount
	// users[i] says which container and annotation needed mounts[i], for conflict messages.
	users []string
	// env are the app's variables the agent needs to expand the subPathExpr of its mounts.
	env []corev1.EnvVar
	// volumes and appMounts are what was added to the pod (emptyDir mode): volume names and
	// container:path.
	volumes   []string
	appMounts []string
	warnings  []string
	// own are the agent's own mounts, which no log volume may overlap.
	own []ownDir
	// skipped are the volumes left out for holding secrets, warned about once each.
	skipped []string
}

// ownDir is a directory the agent mounts for itself, and what it holds.
type ownDir struct{ path, what string }

// ownDirs are the agent's own mounts in this pod: a log volume at, above or below one of them
// would give the agent two mounts at one path, or one inside a read-only volume.
func ownDirs(r *request, noToken bool) []ownDir {
	dirs := []ownDir{{StateDir, "checkpoint directory " + StateDir}, {PodInfoDir, "pod labels directory " + PodInfoDir}}
	if noToken {
		dirs = append(dirs, ownDir{TokenDir, "empty service-account token directory " + TokenDir + " (not mounted when the pod sets automountServiceAccountToken: false)"})
	}
	if r.security.headers != "" {
		dirs = append(dirs, ownDir{UpstreamHeadersDir, "mount of the upstream headers (" + AnnotationUpstreamHeaders + ") at " + UpstreamHeadersDir})
	}
	if r.security.ca != nil {
		dirs = append(dirs, ownDir{UpstreamCADir, "mount of the upstream CA (" + AnnotationUpstreamCA + ") at " + UpstreamCADir})
	}
	if r.security.sharedKey != nil {
		dirs = append(dirs, ownDir{SharedKeyDir, "mount of the shared key (" + AnnotationUpstreamSharedKey + ") at " + SharedKeyDir})
	}
	if r.security.user != nil {
		dirs = append(dirs, ownDir{UserDir, "mount of the upstream user (" + AnnotationUpstreamUser + ") at " + UserDir})
	}
	return dirs
}

// add finds the volume behind one glob of an app container and mounts it, and every volume
// mounted below the glob's directory in which the glob can match files, into the agent.
func (m *logMounts) add(ci int, tail setting, glob string) error {
	c := &m.pod.Spec.Containers[ci]
	prefix := staticPrefix(glob)
	cover, ok := coveringMount(c.VolumeMounts, prefix)
	if !ok {
		vm, err := m.addEmptyDir(c, tail, glob)
		if err != nil {
			return err
		}
		cover = vm
	}
	if err := m.use(c, tail, glob, cover, true); err != nil {
		return err
	}
	for _, vm := range c.VolumeMounts {
		if mp := path.Clean(vm.MountPath); below(mp, prefix) && matchesBelow(glob, mp) {
			if err := m.use(c, tail, glob, vm, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// addEmptyDir handles a glob on no volume: refused unless the policy says emptyDir.
func (m *logMounts) addEmptyDir(c *corev1.Container, tail setting, glob string) (corev1.VolumeMount, error) {
	dir := staticPrefix(glob)
	if dir == glob {
		dir = path.Dir(glob)
	}
	if m.policy.MissingVolume != MissingVolumeEmptyDir {
		return corev1.VolumeMount{}, errorf(tail.key, tail.origin,
			"%s is on no volume of container %q, so the agent cannot see it; mount a volume at %s in %q (an emptyDir volume will do: volumes: [{name: logs, emptyDir: {}}], volumeMounts: [{name: logs, mountPath: %s}]), or ask the cluster admin for missingVolume: emptyDir in the sidelog policy",
			glob, c.Name, dir, c.Name, dir)
	}
	if slices.Contains(systemDirs, dir) || slices.ContainsFunc(pseudoFS, func(fs string) bool { return below(dir, fs) }) {
		return corev1.VolumeMount{}, errorf(tail.key, tail.origin,
			"%s is on no volume of container %q, and an emptyDir at %s would hide the image's own files there; mount a volume at the directory the logs are written to",
			glob, c.Name, dir)
	}
	name := fmt.Sprintf("%s%d", logVolumePrefix, len(m.volumes))
	m.pod.Spec.Volumes = append(m.pod.Spec.Volumes, corev1.Volume{
		Name:         name,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	})
	vm := corev1.VolumeMount{Name: name, MountPath: dir}
	c.VolumeMounts = append(c.VolumeMounts, vm)
	m.volumes = append(m.volumes, name)
	m.appMounts = append(m.appMounts, c.Name+":"+dir)
	m.warnings = append(m.warnings, fmt.Sprintf("%s: %s was on no volume of container %q: added emptyDir volume %q at %s to it and to the agent; files the image had in %s are hidden",
		tail.key, glob, c.Name, name, dir, dir))
	return vm, nil
}

// use mounts vm of container c into the agent. cover says vm holds the glob's directory. A
// volume below it that may hold secrets (secretKind) is skipped with a warning: the agent
// would read, and might ship to a shared aggregator, what the pod keeps there.
func (m *logMounts) use(c *corev1.Container, tail setting, glob string, vm corev1.VolumeMount, cover bool) error {
	mp := path.Clean(vm.MountPath)
	vol := slices.IndexFunc(m.pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
	if vol < 0 {
		return errorf(tail.key, tail.origin, "%s is on volume %q of container %q, which the pod does not define", glob, vm.Name, c.Name)
	}
	src := m.pod.Spec.Volumes[vol].VolumeSource
	if kind := readOnlyKind(src); kind != "" && cover {
		return errorf(tail.key, tail.origin, "%s is on the %s volume %q of container %q, which is read-only and holds no logs; write the logs to a volume such as an emptyDir",
			glob, kind, vm.Name, c.Name)
	}
	if kind := secretKind(src); kind != "" && !cover {
		if !slices.Contains(m.skipped, vm.Name) {
			m.skipped = append(m.skipped, vm.Name)
			m.warnings = append(m.warnings, fmt.Sprintf("%s: the %s volume %q at %s in container %q is below %s but may hold secrets, so it is not mounted into the agent and no file in it is tailed; to ship its files, tail a glob whose own directory is on it",
				tail.key, kind, vm.Name, mp, c.Name, glob))
		}
		return nil
	}
	for _, own := range m.own {
		if mp == own.path || below(mp, own.path) || below(own.path, mp) {
			return errorf(tail.key, tail.origin, "%s is on volume %q mounted at %s, which overlaps the agent's own %s; write the logs elsewhere",
				glob, vm.Name, vm.MountPath, own.what)
		}
	}
	user := fmt.Sprintf("container %q (%s)", c.Name, tail.key)
	for i, have := range m.mounts {
		if path.Clean(have.MountPath) != mp {
			continue
		}
		if have.Name == vm.Name && have.SubPath == vm.SubPath && have.SubPathExpr == vm.SubPathExpr {
			return m.copyEnv(c, tail, vm.SubPathExpr)
		}
		return errorf(tail.key, tail.origin, "%s is volume %q in container %q, but %s mounts volume %q%s there; the agent has one file system, so write these logs to different paths",
			mp, vm.Name, c.Name, m.users[i], have.Name, subPathNote(have))
	}
	m.mounts = append(m.mounts, corev1.VolumeMount{
		Name:        vm.Name,
		MountPath:   vm.MountPath,
		SubPath:     vm.SubPath,
		SubPathExpr: vm.SubPathExpr,
		ReadOnly:    true,
	})
	m.users = append(m.users, user)
	return m.copyEnv(c, tail, vm.SubPathExpr)
}

func subPathNote(vm corev1.VolumeMount) string {
	switch {
	case vm.SubPath != "":
		return " (subPath " + vm.SubPath + ")"
	case vm.SubPathExpr != "":
		return " (subPathExpr " + vm.SubPathExpr + ")"
	}
	return ""
}

// readOnlyKind names the kinds of volume that Kubernetes fills and mounts read-only.
func readOnlyKind(v corev1.VolumeSource) string {
	switch {
	case v.Secret != nil:
		return "secret"
	case v.ConfigMap != nil:
		return "configMap"
	case v.DownwardAPI != nil:
		return "downwardAPI"
	case v.Projected != nil:
		return "projected"
	case v.Image != nil:
		return "image"
	}
	return ""
}

// secretKind names the kinds of volume that may hold secrets: those Kubernetes fills
// (readOnlyKind), CSI volumes (the Secrets Store CSI driver, cert-manager's csi-driver, Vault's),
// in-memory emptyDirs (where injectors such as Vault's agent write the secrets they fetch, at
// /vault/secrets) and the node's own files (hostPath). A glob reaches them only when its own
// directory is on one; a volume of this kind merely below a glob's directory is left out.
func secretKind(v corev1.VolumeSource) string {
	switch {
	case readOnlyKind(v) != "":
		return readOnlyKind(v)
	case v.CSI != nil:
		return "CSI (" + v.CSI.Driver + ")"
	case v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory:
		return "in-memory emptyDir"
	case v.HostPath != nil:
		return "hostPath"
	}
	return ""
}

// matchesBelow reports whether glob can match a file below directory dir: dir's segments match
// the glob's first ones (a "**" matches any number of them) and the glob goes on below it.
func matchesBelow(glob, dir string) bool {
	g := strings.Split(strings.TrimPrefix(glob, "/"), "/")
	d := strings.Split(strings.TrimPrefix(dir, "/"), "/")
	for i, seg := range d {
		if i >= len(g) {
			return false
		}
		if g[i] == "**" {
			return true
		}
		if ok, err := path.Match(g[i], seg); err != nil || !ok {
			return false
		}
	}
	return len(g) > len(d)
}

// envRef matches a $(VAR) reference as Kubernetes expands them in subPathExpr and env values,
// or the escape $$, which leaves the next "$(" alone; submatch 1 is the name or empty.
var envRef = regexp.MustCompile(`\$(?:\$|\(([A-Za-z_][A-Za-z0-9_.-]*)\))`)

// copyEnv gives the agent the app's definitions of the variables that expr refers to, and of
// those their values refer to, in the app's order (Kubernetes expands a reference only to a
// variable defined earlier), so that a subPathExpr expands to the same directory in both.
func (m *logMounts) copyEnv(c *corev1.Container, tail setting, expr string) error {
	last := map[string]int{} // the last definition of a name is the one that counts
	for i, e := range c.Env {
		last[e.Name] = i
	}
	need := map[string]bool{}
	var visit func(s string) error
	visit = func(s string) error {
		for _, ref := range envRef.FindAllStringSubmatch(s, -1) {
			name := ref[1]
			if name == "" || need[name] {
				continue
			}
			i, ok := last[name]
			if !ok {
				where := "does not define it"
				if len(c.EnvFrom) > 0 {
					where = "does not define it in env (envFrom cannot be shared with the agent)"
				}
				return errorf(tail.key, tail.origin, "the subPathExpr %q of container %q refers to $(%s), and the container %s; the agent could not find the same directory",
					expr, c.Name, name, where)
			}
			if own, ok := agentEnv[name]; ok {
				if !sameEnv(c.Env[i], own) {
					return errorf(tail.key, tail.origin, "the subPathExpr %q of container %q refers to $(%s), which the container defines differently from the agent's own %s",
						expr, c.Name, name, name)
				}
				continue
			}
			if err := checkCopiedEnv(c.Env[i]); err != nil {
				return errorf(tail.key, tail.origin, "the subPathExpr %q of container %q refers to $(%s), %v; use a plain value or a fieldRef under another name",
					expr, c.Name, name, err)
			}
			need[name] = true
			if err := visit(c.Env[i].Value); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(expr); err != nil {
		return err
	}
	for i, e := range c.Env {
		if !need[e.Name] || last[e.Name] != i {
			continue
		}
		def := e.DeepCopy()
		if k := slices.IndexFunc(m.env, func(have corev1.EnvVar) bool { return have.Name == def.Name }); k >= 0 {
			if !sameEnv(m.env[k], *def) {
				return errorf(tail.key, tail.origin, "the subPathExpr %q of container %q refers to $(%s), which another tailed container defines differently",
					expr, c.Name, def.Name)
			}
			continue
		}
		m.env = append(m.env, *def)
	}
	return nil
}

// The agent gets the app's definition of a variable that a subPathExpr needs, and nothing
// else of the app's environment. Some names change how a Go program runs, whom it trusts or
// what the dynamic loader does; the pod's author must not reach the agent's runtime or trust
// through them, whatever the policy lets pods override.
var (
	agentRuntimeEnv = []string{
		"GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT", "GOTRACEBACK", "GORACE", "GOCOVERDIR", "GOFIPS140",
		"ZONEINFO", "SSL_CERT_FILE", "SSL_CERT_DIR",
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD",
	}
	agentRuntimeEnvPrefixes = []string{"LD_", "SIDELOG_"}
)

// checkCopiedEnv says why a variable may not be copied into the agent: only plain values and
// fieldRefs (the pod's own metadata) may, never a Secret, a ConfigMap, a file or a resource,
// and never a name of agentRuntimeEnv.
func checkCopiedEnv(e corev1.EnvVar) error {
	upper := strings.ToUpper(e.Name)
	if slices.Contains(agentRuntimeEnv, upper) || slices.ContainsFunc(agentRuntimeEnvPrefixes, func(p string) bool { return strings.HasPrefix(upper, p) }) {
		return fmt.Errorf("a name that would change the agent's runtime, trust roots or loader if the agent had it")
	}
	if f := e.ValueFrom; f != nil && f.FieldRef == nil {
		from := "a source other than a value or fieldRef"
		switch {
		case f.SecretKeyRef != nil:
			from = "a secretKeyRef"
		case f.ConfigMapKeyRef != nil:
			from = "a configMapKeyRef"
		case f.ResourceFieldRef != nil:
			from = "a resourceFieldRef"
		case f.FileKeyRef != nil:
			from = "a fileKeyRef"
		}
		return fmt.Errorf("which the container takes from %s: the agent gets only plain values and fieldRefs", from)
	}
	return nil
}

// sameEnv reports whether two definitions give the same value, taking an unset fieldRef API
// version as the "v1" it defaults to.
func sameEnv(a, b corev1.EnvVar) bool {
	for _, e := range []*corev1.EnvVar{&a, &b} {
		if f := e.ValueFrom; f != nil && f.FieldRef != nil && f.FieldRef.APIVersion == "" {
			e.ValueFrom = f.DeepCopy() // f is the pod's own: changing it changed the app container
			e.ValueFrom.FieldRef.APIVersion = "v1"
		}
	}
	return a.Name == b.Name && a.Value == b.Value && equalSource(a.ValueFrom, b.ValueFrom)
}

func equalSource(a, b *corev1.EnvVarSource) bool {
	if a == nil || b == nil {
		return a == b
	}
	// EnvVarSource holds only comparable pointers to small structs; compare what they point to.
	return fmt.Sprint(deref(a.FieldRef), deref(a.ResourceFieldRef), deref(a.ConfigMapKeyRef), deref(a.SecretKeyRef), deref(a.FileKeyRef)) ==
		fmt.Sprint(deref(b.FieldRef), deref(b.ResourceFieldRef), deref(b.ConfigMapKeyRef), deref(b.SecretKeyRef), deref(b.FileKeyRef))
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// staticPrefix is the part of a glob before its first segment with a wildcard: the directory
// that must lie on a volume. A glob without wildcards is its own prefix.
func staticPrefix(glob string) string {
	segs := strings.Split(strings.TrimPrefix(glob, "/"), "/")
	n := slices.IndexFunc(segs, func(s string) bool { return strings.ContainsAny(s, `*?[\`) })
	if n < 0 {
		return glob
	}
	return "/" + strings.Join(segs[:n], "/")
}

// coveringMount returns the mount of the deepest directory that holds p.
func coveringMount(mounts []corev1.VolumeMount, p string) (corev1.VolumeMount, bool) {
	best, found := corev1.VolumeMount{}, false
	for _, vm := range mounts {
		mp := path.Clean(vm.MountPath)
		if (mp == p || below(p, mp)) && (!found || len(mp) > len(path.Clean(best.MountPath))) {
			best, found = vm, true
		}
	}
	return best, found
}

// below reports whether p is strictly inside directory dir.
func below(p, dir string) bool {
	if dir == "/" {
		return p != "/" && strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, dir+"/")
}

// readFromAuto settles sidelog.io/read-from auto for the globs of container ci: head when
// every volume they are on is new with the pod, tail when one outlives it (see
// AnnotationReadFrom). It names a volume of each kind, for the warning about a mix.
func readFromAuto(pod *corev1.Pod, ci int, globs []string) (readFrom, lasting, fresh string) {
	c := &pod.Spec.Containers[ci]
	note := func(vm corev1.VolumeMount, cover bool) {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 {
			return
		}
		switch src := pod.Spec.Volumes[i].VolumeSource; {
		case src.EmptyDir != nil || src.Ephemeral != nil:
			fresh = cmp.Or(fresh, vm.Name)
		case secretKind(src) != "" && !cover:
			// Not mounted into the agent unless it holds the glob's directory; never logs anyway.
		default:
			lasting = cmp.Or(lasting, vm.Name)
		}
	}
	// The volumes logMounts.add mounts: the one holding each glob's directory, and those
	// below it in which the glob can match a file.
	for _, g := range globs {
		prefix := staticPrefix(g)
		if vm, ok := coveringMount(c.VolumeMounts, prefix); ok {
			note(vm, true)
		}
		for _, vm := range c.VolumeMounts {
			if mp := path.Clean(vm.MountPath); below(mp, prefix) && matchesBelow(g, mp) {
				note(vm, false)
			}
		}
	}
	if lasting != "" {
		return config.ReadFromTail, lasting, fresh
	}
	return config.ReadFromHead, lasting, fresh
}
