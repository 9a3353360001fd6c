package injector

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// setting is one resolved value and the key it came from, for messages.
type setting struct {
	key    string
	origin Origin
	// parsed is what parseValue made of the annotation's value.
	parsed any
}

// annotationSet is the sidelog annotations of one object (pod or namespace), checked for
// spelling and grouped by option.
type annotationSet struct {
	global map[string]setting            // option → the value of sidelog.io/<option>
	per    map[string]map[string]setting // option → container → the value of sidelog.io/<option>.<container>
}

// get returns the value that applies to container for option: the container's own key first,
// then the whole-pod key. container "" asks for the whole-pod key only.
func (s annotationSet) get(opt, container string) (setting, bool) {
	if container != "" {
		if v, ok := s.per[opt][container]; ok {
			return v, true
		}
	}
	v, ok := s.global[opt]
	return v, ok
}

// anyBut returns the first key, in sorted order, of an option not listed in ignore.
func (s annotationSet) anyBut(ignore ...string) (string, bool) {
	var keys []string
	for opt, v := range s.global {
		if !slices.Contains(ignore, opt) {
			keys = append(keys, v.key)
		}
	}
	for opt, m := range s.per {
		if slices.Contains(ignore, opt) {
			continue
		}
		for _, v := range m {
			keys = append(keys, v.key)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	return slices.Min(keys), true
}

// maxValueBytes bounds the value of one sidelog annotation. Values end up in the agent's
// environment, which Linux caps at 128 KiB a variable (see maxConfigBytes); no list of globs or
// regex needs more, and a refusal here names the annotation at fault.
const maxValueBytes = 16 << 10

// parseKeys checks the spelling, placement and value of every sidelog annotation in ann and
// groups them by option. Every mistake is reported, in sorted order of the keys, so that one
// run names them all and the error is the same on every run: the error is an *Error, or
// several joined (errors.Join), each naming its annotation.
func parseKeys(ann map[string]string, from Origin, p *Policy) (annotationSet, error) {
	s := annotationSet{global: map[string]setting{}, per: map[string]map[string]setting{}}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(ann)) {
		name, container, suffixed, err := checkKey(key, ann[key], from, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if name == "" {
			continue // not a sidelog annotation
		}
		parsed, err := parseValue(name, ann[key], p)
		if err != nil {
			errs = append(errs, errorf(key, from, "%v", err))
			continue
		}
		v := setting{key: key, origin: from, parsed: parsed}
		if !suffixed {
			s.global[name] = v
			continue
		}
		if s.per[name] == nil {
			s.per[name] = map[string]setting{}
		}
		s.per[name][container] = v
	}
	return s, errors.Join(errs...)
}

// checkKey checks the spelling and placement of one annotation and the size of its value, and
// returns its option name and container; name is "" for an annotation that is not sidelog's.
func checkKey(key, value string, from Origin, p *Policy) (name, container string, suffixed bool, err error) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		if domain, path, ok := strings.Cut(key, "/"); ok && nearPrefix(domain) {
			return "", "", false, errorf(key, from, "unknown annotation prefix %q; did you mean %s?", domain+"/", Prefix+path)
		}
		return "", "", false, nil
	}
	name, container, suffixed = strings.Cut(rest, ".")
	o, ok := lookupOption(name)
	switch {
	case !ok:
		return "", "", false, errorf(key, from, "unknown annotation; %s", suggestKey(name, container, suffixed))
	case suffixed && !o.perContainer:
		return "", "", false, errorf(key, from, "%s applies to the whole pod and takes no .<container> suffix", Prefix+name)
	case suffixed && container == "":
		return "", "", false, errorf(key, from, "missing container name: want %s.<container>", Prefix+name)
	case from == FromNamespace && o.podOnly && name == optTail:
		return "", "", false, errorf(key, from, "tail globs are set on pods, not namespaces: only a pod knows which files it writes")
	case from == FromNamespace && o.podOnly && name == optCleanup:
		return "", "", false, errorf(key, from, "cleanup globs are set on pods, not namespaces: only a pod knows which files it rotates")
	case from == FromPod && name == optCleanup && !p.AllowCleanup:
		return "", "", false, errorf(key, from, "the cluster policy does not let the agent remove files (allowCleanup: false); remove this annotation, or ask the cluster admin for allowCleanup: true")
	case from == FromNamespace && o.podOnly:
		return "", "", false, errorf(key, from, "written by sidelog on pods, not set on namespaces; remove it")
	case from == FromPod && o.policed && !slices.Contains(p.AllowPodOverride, name):
		return "", "", false, errorf(key, from, "the cluster policy does not let pods set %s (allowPodOverride: [%s]); set it on the namespace, or ask the cluster admin to allow it",
			Prefix+name, strings.Join(p.AllowPodOverride, ", "))
	case len(value) > maxValueBytes:
		return "", "", false, errorf(key, from, "value of %d bytes, more than the %d a sidelog annotation may hold", len(value), maxValueBytes)
	}
	return name, container, suffixed, nil
}

// nearPrefix reports whether an annotation domain looks like a misspelt "sidelog.io"
// ("sidlog.io", "Sidelog.io", "sidelog.com", "sidelog") rather than another product's
// ("sidecar.io", "sidelogger.example.com").
func nearPrefix(domain string) bool {
	const want = "sidelog.io"
	if domain == want {
		return false
	}
	d := strings.ToLower(domain)
	dist := distance(d, want)
	return dist <= 2 || dist <= 3 && strings.HasPrefix(d, "sidelog")
}

// suggestKey says what an unknown option name was probably meant to be.
func suggestKey(name, container string, suffixed bool) string {
	var names []string
	for _, o := range options {
		names = append(names, o.name)
	}
	// "tail-app", "tail_app": the dot before the container was mistyped.
	for _, o := range options {
		n := len(o.name)
		if o.perContainer && !suffixed && len(name) > n+1 && strings.EqualFold(name[:n], o.name) && strings.ContainsRune("-_:/", rune(name[n])) {
			return fmt.Sprintf("did you mean %s%s.%s?", Prefix, o.name, name[n+1:])
		}
	}
	lower := strings.ToLower(name)
	best, bestD := "", 0
	for _, n := range names {
		d := distance(lower, n)
		if best == "" || d < bestD {
			best, bestD = n, d
		}
	}
	if bestD <= max(2, len(best)/3) {
		o, _ := lookupOption(best)
		if suffixed && o.perContainer {
			return fmt.Sprintf("did you mean %s%s.%s?", Prefix, best, container)
		}
		return fmt.Sprintf("did you mean %s%s?", Prefix, best)
	}
	var known []string
	for _, o := range options {
		if o.perContainer {
			known = append(known, o.name+"[.<container>]")
		} else {
			known = append(known, o.name)
		}
	}
	return fmt.Sprintf("known: %s%s", Prefix, strings.Join(known, ", "+Prefix))
}

// distance is the optimal-string-alignment edit distance between a and b: insertions,
// deletions, substitutions and transpositions of adjacent bytes each cost one, so "tial" is one
// edit from "tail".
func distance(a, b string) int {
	// Three rows suffice: the transposition looks two rows back.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// parseValue parses the value of option opt.
func parseValue(opt, v string, p *Policy) (any, error) {
	switch opt {
	case optInject:
		return parseInject(v)
	case optTail, optExclude:
		return parseGlobs(v, p.MaxGlobs)
	case optMultiline:
		return parseMultiline(v)
	case optParser:
		return parseParser(v)
	case optReadFrom:
		return parseReadFrom(v)
	case optIgnoreOlder:
		return parseIgnoreOlder(v)
	case optTimeKey:
		return parseTimeKey(v)
	case optTimeFormat:
		return parseTimeFormat(v)
	case optRateLimit:
		return parseRateLimit(v)
	case optUpstream:
		return parseUpstream(v, p.MaxUpstreams)
	case optProtocol:
		return parseProtocol(v)
	case optHeaders:
		return parseSecretName(v)
	case optCompression:
		return parseCompression(v)
	case optTLS:
		return parseBool(v)
	case optServerName:
		return parseServerName(v)
	case optCA:
		return parseSecretRef(v, DefaultCAKey)
	case optSharedKey:
		return parseSecretRef(v, DefaultSharedKeyKey)
	case optUser:
		return parseUserRef(v)
	case optSidecarMode:
		return parseMode(v)
	case optRequestsCPU, optRequestsMemory, optLimitsCPU, optLimitsMemory:
		return parseQuantity(v)
	case optMetricsPort:
		return parsePort(v)
	case optCleanup:
		return parseCleanup(v, p.MaxGlobs)
	}
	// optStatus is sidelog's own record, replaced on injection.
	return nil, nil
}
