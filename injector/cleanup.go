package injector

import (
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Cleanup (AnnotationCleanup): the agent removes rotated files once delivered. What is checked
// here is what can be known before the pod runs: that the policy allows it, that the agent reads
// every file the cleanup globs can match (so that it can know them delivered), and that no
// cleanup glob can match a file being written, as far as the tail globs name those. The agent
// checks the rest at run time (sidecar/tail/cleanup.go): every byte acknowledged, nothing
// written for the settle period, a newer file beside it.

// compressedSuffixes end the names of compressed rotations (logrotate's compress, logback's
// .gz file name pattern): the agent does not read them as text, so it never sees them delivered.
var compressedSuffixes = []string{".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".Z", ".tgz"}

// maxCleanupDepth bounds the directories of a cleanup glob, so that comparing it with the tail
// globs (globCovers, whose work is the product of their depths) stays cheap for the webhook
// whatever an annotation holds: no log directory is nested anywhere near this deep.
const maxCleanupDepth = 64

// maxCleanupBytes bounds a cleanup glob's length likewise (a name is at most 255 bytes).
const maxCleanupBytes = 1024

// parseCleanup parses the globs of AnnotationCleanup and refuses those that no pod could use
// safely: a glob whose file names are nothing but wildcards matches the file being written too,
// and a compressed rotation is never read.
func parseCleanup(v string, maxGlobs int) ([]string, error) {
	globs, err := parseGlobs(v, maxGlobs)
	if err != nil {
		return nil, err
	}
	for _, g := range globs {
		dir, name := path.Split(g)
		dir = path.Clean(dir)
		switch {
		case len(g) > maxCleanupBytes || strings.Count(g, "/") > maxCleanupDepth:
			return nil, fmt.Errorf("%.40s... is %d bytes long and %d segments deep: want at most %d bytes and %d segments, as deep as any log directory goes",
				g, len(g), strings.Count(g, "/"), maxCleanupBytes, maxCleanupDepth)
		case strings.Trim(name, "*?") == "":
			return nil, fmt.Errorf("%s matches every file in %s, the file being written included: name the rotated files only, such as %s (logrotate, Python's RotatingFileHandler) or %s (logback)",
				g, dir, path.Join(dir, "app.log.*"), path.Join(dir, "app.*.log"))
		case slices.ContainsFunc(compressedSuffixes, func(s string) bool { return strings.HasSuffix(name, s) }):
			return nil, fmt.Errorf("%s names compressed rotations, which the agent does not read and so never sees delivered: rotate without compression (logrotate's nocompress) for the agent to remove the files, or leave compressed ones to logrotate's rotate and maxage",
				g)
		}
	}
	return globs, nil
}

// checkCleanup checks the cleanup globs of in against the tail globs of every input: each must
// be covered by one of in's own (the agent removes only what it read to the end), and none may
// match every file a tail glob names, or the name a tail glob spells out (app.log of
// /var/log/app/app.log*): those are the files being written -- unless the glob names the
// rotations of a live file listed apart beside them (rotationsBeside).
func checkCleanup(in input, inputs []input, apps []corev1.Container) error {
	key := in.cleanupKey
	for _, c := range in.cleanup {
		for _, other := range inputs {
			owner := apps[other.container].Name
			for _, t := range other.paths {
				if rotationsBeside(c, t, other.paths) {
					continue // t names rotations only: the live file is a glob of its own, which c leaves
				}
				if globCovers(c, t) {
					return errorf(key.key, key.origin, "%s matches every file that tail glob %s of container %q names, the files being written: name the rotated files only, such as %s",
						c, t, owner, rotatedExample(t))
				}
				if live, ok := liveName(t); ok && globCovers(c, live) {
					return errorf(key.key, key.origin, "%s matches %s, the file that tail glob %s of container %q names, which is the file being written: name the rotated files only, such as %s",
						c, live, t, owner, rotatedExample(t))
				}
			}
		}
		if !slices.ContainsFunc(in.paths, func(t string) bool { return globCovers(t, c) }) {
			name := apps[in.container].Name
			return errorf(key.key, key.origin, "%s is not matched by the tail globs of container %q (%s): the agent removes only files that it read to their end; add the rotated files to %s.%s, such as %s",
				c, name, strings.Join(in.paths, ","), AnnotationTail, name, c)
		}
	}
	return nil
}

// rotationsBeside reports whether tail glob t can be taken for the rotations alone of a live file
// that another glob of paths names: every name t matches extends a name of that glob (app.log.*
// beside app.log, *.log.* beside *.log), and cleanup glob c leaves that glob (it covers neither
// it nor the name it spells out). Tail globs that list the live file apart (app.log,app.log.*,
// as Fluent Bit users often write them) name no file being written in t. A glob for another
// file (error.log beside access*.log) is no such live file.
func rotationsBeside(c, t string, paths []string) bool {
	return slices.ContainsFunc(paths, func(live string) bool {
		if live == t || !globCovers(live+"*", t) || globCovers(c, live) {
			return false
		}
		name, ok := liveName(live)
		return ok && !globCovers(c, name)
	})
}

// liveName is a tail glob with the stars of its file name left out: the name it spells out
// (/var/log/app/app.log for /var/log/app/app.log*), which is that of the file being written.
func liveName(t string) (string, bool) {
	dir, name := path.Split(t)
	if name == "**" {
		return "", false
	}
	name = strings.ReplaceAll(name, "*", "")
	if name == "" {
		return "", false
	}
	return dir + name, true
}

// rotatedExample suggests a cleanup glob for the rotations of the files of tail glob t.
func rotatedExample(t string) string {
	if live, ok := liveName(t); ok && !strings.ContainsAny(path.Base(live), `?[\`) && !strings.HasPrefix(path.Base(live), ".") {
		return live + ".*"
	}
	return path.Join(path.Dir(t), "app.log.*")
}

// globCovers reports whether every path that glob inner matches is matched by glob outer, as
// the agent's globs match (sidecar/find: path.Match in each segment, "**" for any number of
// segments). It is conservative: a true answer is always right; a false one may miss a
// containment that needs reasoning about character classes.
func globCovers(outer, inner string) bool {
	o := strings.Split(strings.TrimPrefix(outer, "/"), "/")
	n := strings.Split(strings.TrimPrefix(inner, "/"), "/")
	return covers(len(o), len(n), func(i int) bool { return o[i] == "**" }, func(j int) bool { return n[j] == "**" },
		func(i, j int) bool { return segmentCovers(o[i], n[j]) })
}

// segmentCovers reports whether every name that pattern inner matches is matched by pattern
// outer (path.Match patterns without "/"), conservatively as globCovers.
func segmentCovers(outer, inner string) bool {
	o, okO := tokens(outer)
	n, okN := tokens(inner)
	if !okO || !okN {
		return false
	}
	return covers(len(o), len(n), func(i int) bool { return o[i] == "*" }, func(j int) bool { return n[j] == "*" },
		func(i, j int) bool { return tokenCovers(o[i], n[j]) })
}

// covers is the containment of two sequences of tokens, where a star of outer (isStar) takes any
// run of inner's tokens, a star of inner can be taken only by one of outer's, and any other pair
// must cover one another one to one (one). Dynamic programming over the suffixes: O(len·len).
func covers(lo, ln int, outerStar, innerStar func(int) bool, one func(i, j int) bool) bool {
	// memo[i][j]: outer[i:] covers inner[j:].
	memo := make([][]bool, lo+1)
	for i := range memo {
		memo[i] = make([]bool, ln+1)
	}
	memo[lo][ln] = true
	for i := lo; i >= 0; i-- {
		for j := ln; j >= 0; j-- {
			if i == lo {
				memo[i][j] = j == ln
				continue
			}
			switch {
			case outerStar(i):
				memo[i][j] = memo[i+1][j] || j < ln && memo[i][j+1]
			case j == ln || innerStar(j):
				memo[i][j] = false
			default:
				memo[i][j] = memo[i+1][j+1] && one(i, j) // one may be a containment of its own
			}
		}
	}
	return memo[0][0]
}

// tokens splits a path.Match pattern into its tokens: "*", "?", a class "[...]", or one literal
// character (an escaped one without its backslash, prefixed with "\" to tell it from a wildcard).
// It reports false for a pattern it cannot read.
func tokens(p string) ([]string, bool) {
	var out []string
	for i := 0; i < len(p); {
		switch p[i] {
		case '*':
			if len(out) == 0 || out[len(out)-1] != "*" {
				out = append(out, "*")
			}
			i++
		case '?':
			out = append(out, "?")
			i++
		case '[':
			end := strings.IndexByte(p[i+1:], ']')
			if end < 0 {
				return nil, false
			}
			if end == 0 { // "[]...]": a ']' first in a class is not special to path.Match; stay safe
				return nil, false
			}
			out = append(out, p[i:i+end+2])
			i += end + 2
		case '\\':
			if i+1 >= len(p) {
				return nil, false
			}
			out = append(out, `\`+p[i+1:i+2])
			i += 2
		default:
			out = append(out, `\`+p[i:i+1])
			i++
		}
	}
	return out, true
}

// tokenCovers reports whether every character token inner matches is matched by token outer.
func tokenCovers(outer, inner string) bool {
	switch {
	case outer == "?":
		return true // inner is one character of some kind
	case outer == inner:
		return true
	case strings.HasPrefix(outer, "[") && strings.HasPrefix(inner, `\`):
		ok, err := path.Match(outer, inner[1:])
		return err == nil && ok
	}
	return false
}

// writable makes the agent's mounts of the volumes that cleanup glob g of container ci can
// match files on read-write: the one holding its directory, and those below it where it can
// match. Only those: every other log volume stays read-only. A volume the agent does not mount
// (one that may hold secrets, left out) holds no file the agent reads, so none it removes.
func (m *logMounts) writable(ci int, key setting, g string) error {
	c := &m.pod.Spec.Containers[ci]
	prefix := staticPrefix(g)
	var need []corev1.VolumeMount
	if cover, ok := coveringMount(c.VolumeMounts, prefix); ok {
		need = append(need, cover)
	}
	for _, vm := range c.VolumeMounts {
		if mp := path.Clean(vm.MountPath); below(mp, prefix) && matchesBelow(g, mp) {
			need = append(need, vm)
		}
	}
	for _, vm := range need {
		i := slices.IndexFunc(m.mounts, func(have corev1.VolumeMount) bool {
			return path.Clean(have.MountPath) == path.Clean(vm.MountPath) && have.Name == vm.Name
		})
		if i < 0 {
			continue
		}
		if vm.ReadOnly {
			return errorf(key.key, key.origin, "%s is on volume %q, which container %q mounts read-only: it writes no files there, so none to remove",
				g, vm.Name, c.Name)
		}
		if v := slices.IndexFunc(m.pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }); v >= 0 {
			if pvc := m.pod.Spec.Volumes[v].PersistentVolumeClaim; pvc != nil && pvc.ReadOnly {
				return errorf(key.key, key.origin, "%s is on volume %q, a persistentVolumeClaim with readOnly: true, on which the agent cannot remove files",
					g, vm.Name)
			}
		}
		m.mounts[i].ReadOnly = false
	}
	return nil
}
