// Package find expands the absolute globs of an input into the files they match.
//
// Each path segment is a path.Match pattern; a segment "**" matches any number of directories,
// including none. Only the directories a pattern needs are read: literal segments are joined
// without I/O, so /var/log/app/*.log costs one ReadDir. That keeps a scan cheap enough to run
// every poll.
package find

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/sidelog/sidelog/sidecar/config"
)

// Globs is a set of include globs minus exclude globs.
type Globs struct {
	include [][]string // segments of each glob, without the leading "/"
	exclude [][]string
}

// New validates the globs with config.CheckGlob and returns the set.
func New(include, exclude []string) (*Globs, error) {
	if len(include) == 0 {
		return nil, errors.New("find: no paths to tail")
	}
	g := &Globs{}
	for i, p := range include {
		if err := config.CheckGlob(p); err != nil {
			return nil, fmt.Errorf("paths[%d]: %w", i, err)
		}
		g.include = append(g.include, splitGlob(p))
	}
	for i, p := range exclude {
		if err := config.CheckGlob(p); err != nil {
			return nil, fmt.Errorf("exclude[%d]: %w", i, err)
		}
		g.exclude = append(g.exclude, splitGlob(p))
	}
	return g, nil
}

func split(p string) []string { return strings.Split(p[1:], "/") }

// splitGlob returns the segments of a glob with runs of "**" collapsed: "**/**" matches what
// "**" does, and each extra one would only multiply the work of a walk.
func splitGlob(g string) []string {
	return slices.CompactFunc(split(g), func(a, b string) bool { return a == "**" && b == "**" })
}

// Files returns the paths of the non-directories that match, sorted and without duplicates.
// Directories that do not exist (yet) are not an error. Symbolic links are followed for
// segments that name them, but "**" does not descend into linked directories, so a link loop
// cannot make a scan endless. Errors reading a directory are joined into err; the paths found
// elsewhere are still returned.
func (g *Globs) Files() (paths []string, err error) {
	w := walker{}
	for _, segs := range g.include {
		clear(w.doubled) // its keys hold for one glob
		w.walk("/", segs)
	}
	slices.Sort(w.found)
	w.found = slices.Compact(w.found)
	if len(g.exclude) > 0 {
		w.found = slices.DeleteFunc(w.found, g.excluded)
	}
	return w.found, errors.Join(w.errs...)
}

// Match reports whether name (absolute and clean) matches an include glob and no exclude glob.
func (g *Globs) Match(name string) bool {
	if !strings.HasPrefix(name, "/") {
		return false
	}
	segs := split(name)
	for _, pat := range g.include {
		if match(pat, segs) {
			return !g.excluded(name)
		}
	}
	return false
}

func (g *Globs) excluded(name string) bool {
	segs := split(name)
	for _, pat := range g.exclude {
		if match(pat, segs) {
			return true
		}
	}
	return false
}

// match reports whether the path segments name match the pattern segments pat. "**" matches any
// number of segments and every other pattern segment exactly one, so the classic wildcard
// algorithm applies: on a mismatch, only the last "**" seen needs to take one more segment. It
// takes O(len(pat)*len(name)) steps, where trying every split of name among the "**" would take
// exponentially many.
func match(pat, name []string) bool {
	p, n := 0, 0
	star, resume := -1, 0 // the last "**" seen, and the first name segment it has not taken
	for n < len(name) {
		switch {
		case p < len(pat) && pat[p] == "**":
			star, resume = p, n
			p++
		case p < len(pat) && matchSegment(pat[p], name[n]):
			p, n = p+1, n+1
		case star >= 0:
			resume++
			p, n = star+1, resume
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == "**" {
		p++
	}
	return p == len(pat)
}

func matchSegment(pat, name string) bool {
	ok, _ := path.Match(pat, name)
	return ok
}

type walker struct {
	found []string
	errs  []error
	// doubled holds the directories already walked with a pattern suffix that starts with "**"
	// (the suffix by its length). Every other walk is reached in one way only, but a "**" one
	// can be reached by as many ways as the "**" before it can split the directories between
	// them: without this, /a/**/x/**/x/**/*.log over nested x directories walks exponentially
	// often.
	doubled map[walked]bool
}

type walked struct {
	dir  string
	segs int
}

func (w *walker) walk(dir string, segs []string) {
	seg, rest := segs[0], segs[1:]
	switch {
	case seg == "**":
		k := walked{dir, len(segs)}
		if w.doubled[k] {
			return
		}
		if w.doubled == nil {
			w.doubled = map[walked]bool{}
		}
		w.doubled[k] = true
		if len(rest) > 0 {
			w.walk(dir, rest) // zero directories
		}
		for _, e := range w.readDir(dir) {
			p := path.Join(dir, e.Name())
			switch {
			case e.IsDir():
				w.walk(p, segs)
			case len(rest) == 0:
				w.found = append(w.found, p) // "**" last: every file below
			}
		}
	case !hasMeta(seg):
		p := path.Join(dir, seg)
		if len(rest) > 0 {
			w.walk(p, rest)
			return
		}
		fi, err := os.Stat(p)
		if err == nil && !fi.IsDir() {
			w.found = append(w.found, p)
		} else if err != nil && !ignorable(err) {
			w.errs = append(w.errs, fmt.Errorf("finding files: %w", err))
		}
	default:
		for _, e := range w.readDir(dir) {
			if ok, _ := path.Match(seg, e.Name()); !ok {
				continue
			}
			p := path.Join(dir, e.Name())
			switch {
			case len(rest) == 0 && !e.IsDir():
				// Includes symbolic links, even to directories; the caller's Stat tells.
				w.found = append(w.found, p)
			case len(rest) > 0 && (e.IsDir() || e.Type()&fs.ModeSymlink != 0):
				w.walk(p, rest)
			}
		}
	}
}

func (w *walker) readDir(dir string) []os.DirEntry {
	entries, err := os.ReadDir(dir)
	if err != nil && !ignorable(err) {
		w.errs = append(w.errs, fmt.Errorf("finding files: %w", err))
	}
	return entries
}

// ignorable reports errors that only mean "nothing here": a missing directory, or a path
// component that is a file.
func ignorable(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }
