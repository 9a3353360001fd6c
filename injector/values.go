package injector

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sidelog/sidelog/sidecar/config"
)

// The parsers of annotation values. Each returns an error that says what was expected; the
// caller prefixes the annotation's name.

// splitList splits a list value at commas and newlines (a YAML block scalar puts one entry on
// each line) and trims the space around each entry. Empty entries are dropped.
func splitList(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseGlobs parses a list of absolute globs, of which there may be at most maxGlobs.
// Duplicates are dropped.
func parseGlobs(v string, maxGlobs int) ([]string, error) {
	entries := splitList(v)
	if len(entries) == 0 {
		return nil, errors.New("no globs: want a comma-separated list of absolute paths such as /var/log/app/*.log")
	}
	var globs []string
	for _, g := range entries {
		if err := config.CheckGlob(g); err != nil {
			return nil, err
		}
		if !slices.Contains(globs, g) {
			globs = append(globs, g)
		}
	}
	if len(globs) > maxGlobs {
		return nil, fmt.Errorf("%d globs, more than the %d the cluster policy allows (maxGlobs)", len(globs), maxGlobs)
	}
	return globs, nil
}

// multilineNone turns multiline joining off, for a container whose pod- or namespace-wide
// default would turn it on.
const multilineNone = "none"

var presetWord = regexp.MustCompile(`^[A-Za-z]+$`)

// parseMultiline parses a preset name, "none" (nil) or a first-line regular expression.
// Preset names and "none" are matched without regard to case ("Java" is the java preset). A
// value made only of lowercase letters is a preset name: as a regex it would match any line
// that contains the word, which is almost never what was meant, while a misspelt preset is.
// A word with capitals that is near a preset name ("Pyton") is refused as a misspelt preset
// too; other such words ("ERROR") stay regular expressions, as they always were.
func parseMultiline(v string) (*config.Multiline, error) {
	v = strings.TrimSpace(v)
	presets := strings.Join(config.MultilinePresets, ", ")
	lower := strings.ToLower(v)
	switch {
	case v == "":
		return nil, fmt.Errorf("empty: want a preset (%s), a regular expression matching the first line of a record, or %s", presets, multilineNone)
	case lower == multilineNone:
		return nil, nil
	case slices.Contains(config.MultilinePresets, lower):
		return &config.Multiline{Preset: lower}, nil
	case presetWord.MatchString(v):
		hint := ""
		for _, p := range config.MultilinePresets {
			if distance(lower, p) <= 2 {
				hint = fmt.Sprintf(" (did you mean %s?)", p)
				break
			}
		}
		if hint == "" && v != lower {
			break // a word regex such as ERROR
		}
		return nil, fmt.Errorf("unknown preset %q%s: want one of %s, %s, or a regular expression for the first line of a record (a lowercase word alone is read as a preset name; anchor a word regex as ^word)",
			v, hint, presets, multilineNone)
	}
	if _, err := regexp.Compile(v); err != nil {
		return nil, fmt.Errorf("bad regular expression for the first line of a record: %w", err)
	}
	return &config.Multiline{FirstLine: v}, nil
}

// parseParser parses a parser name.
func parseParser(v string) (string, error) {
	switch v = strings.TrimSpace(v); v {
	case config.ParserNone, config.ParserJSON:
		return v, nil
	}
	return "", fmt.Errorf("got %q, want %q or %q", v, config.ParserNone, config.ParserJSON)
}

// ReadFromAuto is the value of AnnotationReadFrom and Policy.ReadFrom that chooses head or tail
// by the volumes a container's logs are on.
const ReadFromAuto = "auto"

// parseReadFrom parses head, tail or auto.
func parseReadFrom(v string) (string, error) {
	switch v = strings.ToLower(strings.TrimSpace(v)); v {
	case config.ReadFromHead, config.ReadFromTail, ReadFromAuto:
		return v, nil
	}
	return "", fmt.Errorf("got %q, want %q, %q or %q", v, config.ReadFromHead, config.ReadFromTail, ReadFromAuto)
}

// parseIgnoreOlder parses a positive Go duration or a whole number of days ("7d").
func parseIgnoreOlder(v string) (config.Duration, error) {
	v = strings.TrimSpace(v)
	const want = `want a positive duration such as "36h" or a number of days such as "7d"`
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, fmt.Errorf("got %q, %s", v, want)
		}
		return config.Duration(time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("got %q, %s", v, want)
	}
	return config.Duration(d), nil
}

// parseTimeKey parses the name of a top-level JSON field, taken literally as Fluent Bit's
// Time_Key is: "log.time" is a key with a dot, not a path.
func parseTimeKey(v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", errors.New("empty: want the name of a top-level field of the JSON lines, such as time or ts")
	}
	return v, nil
}

// parseTimeFormat parses a preset (any case) or a Go time layout.
func parseTimeFormat(v string) (string, error) {
	if lower := strings.ToLower(strings.TrimSpace(v)); slices.Contains(config.TimeFormats, lower) {
		return lower, nil
	}
	if err := config.CheckTimeFormat(v); err != nil {
		return "", err
	}
	return v, nil
}

// parseUpstream parses a list of upstreams in failover order, at most maxServers: host:port
// addresses, or http:// and https:// URLs. Which of the two the protocol wants is checked with
// checkUpstreamProtocol once the protocol is known.
func parseUpstream(v string, maxServers int) ([]string, error) {
	entries := splitList(v)
	if len(entries) == 0 {
		return nil, errors.New("no address: want host:port[,host:port...] such as fluentd.logging:24224, or with protocol otlp http(s)://host:port[/path]")
	}
	for i, s := range entries {
		if isURL(s) {
			if err := checkURL(s); err != nil {
				return nil, err
			}
		} else if err := checkServer(s); err != nil {
			return nil, err
		}
		if slices.Contains(entries[:i], s) {
			return nil, fmt.Errorf("%q is listed twice", s)
		}
	}
	if len(entries) > maxServers {
		return nil, fmt.Errorf("%d addresses, more than the %d the cluster policy allows (maxUpstreams)", len(entries), maxServers)
	}
	return entries, nil
}

// isURL reports whether an upstream entry is written as a URL (it has a scheme).
func isURL(s string) bool { return strings.Contains(s, "://") }

// checkURL is config.CheckURL and a check that the host is an IP address or a DNS name.
func checkURL(s string) error {
	if _, err := config.CheckURL(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	host := u.Hostname()
	if net.ParseIP(host) != nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(strings.TrimSuffix(strings.ToLower(host), ".")); len(errs) > 0 {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", s, host)
	}
	return nil
}

// checkUpstreamProtocol checks that every entry of an upstream list is what protocol wants:
// host:port for the forward protocol, a URL for OTLP.
func checkUpstreamProtocol(entries []string, protocol string) error {
	for _, s := range entries {
		switch {
		case protocol == config.ProtocolOTLP && !isURL(s):
			return fmt.Errorf("%q is not a URL: with protocol otlp each upstream is http://host:port[/path] or https://host:port[/path] (path %s by default)", s, config.DefaultOTLPPath)
		case protocol != config.ProtocolOTLP && isURL(s):
			return fmt.Errorf("%q is a URL, but the protocol is forward, whose upstreams are host:port: set %s: otlp to send OTLP/HTTP", s, AnnotationUpstreamProtocol)
		}
	}
	return nil
}

// parseProtocol parses the value of AnnotationUpstreamProtocol.
func parseProtocol(v string) (string, error) {
	switch s := strings.TrimSpace(v); s {
	case config.ProtocolForward, config.ProtocolOTLP:
		return s, nil
	}
	return "", fmt.Errorf("got %q, want %q or %q", v, config.ProtocolForward, config.ProtocolOTLP)
}

// parseCompression parses the value of AnnotationUpstreamCompression.
func parseCompression(v string) (string, error) {
	switch s := strings.TrimSpace(v); s {
	case config.CompressionNone, config.CompressionGzip:
		return s, nil
	}
	return "", fmt.Errorf("got %q, want %q or %q", v, config.CompressionNone, config.CompressionGzip)
}

// parseSecretName parses a Secret's name alone (AnnotationUpstreamHeaders: every key is used).
func parseSecretName(v string) (string, error) {
	name := strings.TrimSpace(v)
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("got %q: want the name of a Secret in the pod's namespace, whose every key is a header (no /<key>)", v)
	}
	return name, nil
}

// checkServer is config.CheckHostPort and a check that the host is an IP address or a DNS name.
func checkServer(s string) error {
	if err := config.CheckHostPort(s); err != nil {
		return fmt.Errorf("%w (want host:port such as fluentd.logging:24224)", err)
	}
	host, _, _ := net.SplitHostPort(s)
	if net.ParseIP(host) != nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(strings.TrimSuffix(strings.ToLower(host), ".")); len(errs) > 0 {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", s, host)
	}
	return nil
}

// parseMode parses a sidecar mode.
func parseMode(v string) (string, error) {
	switch v = strings.TrimSpace(v); v {
	case ModeNative, ModeLegacy, ModeAuto:
		return v, nil
	}
	return "", fmt.Errorf("got %q, want %q, %q or %q", v, ModeNative, ModeLegacy, ModeAuto)
}

// parseInject parses the value of AnnotationInject.
func parseInject(v string) (bool, error) {
	if strings.TrimSpace(v) == "enabled" {
		return false, fmt.Errorf("got %q, want \"true\" or \"false\" (the namespace opt-in is the label %s=enabled, not an annotation)", v, AnnotationInject)
	}
	return parseBool(v)
}

// parseBool parses "true" or "false".
func parseBool(v string) (bool, error) {
	switch strings.TrimSpace(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("got %q, want \"true\" or \"false\"", v)
}

// parseServerName parses the name a TLS certificate must carry: a DNS name or an IP address.
func parseServerName(v string) (string, error) {
	v = strings.TrimSpace(v)
	if net.ParseIP(v) != nil {
		return v, nil
	}
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return "", fmt.Errorf("got %q, want a DNS name such as fluentd.logging.svc or an IP address", v)
	}
	return v, nil
}

// secretRef names one key of a Secret in the pod's namespace.
type secretRef struct {
	Name, Key string
}

func (r secretRef) String() string { return r.Name + "/" + r.Key }

// parseSecretRef parses <secret> or <secret>/<key>; a bare name means defaultKey.
func parseSecretRef(v, defaultKey string) (secretRef, error) {
	return secretRefOf(v, defaultKey, fmt.Sprintf("want <secret> (key %s) or <secret>/<key>, naming a Secret in the pod's namespace", defaultKey))
}

// parseUserRef parses the Secret of AnnotationUpstreamUser: its Key is the password's.
func parseUserRef(v string) (secretRef, error) {
	return secretRefOf(v, DefaultPasswordKey, fmt.Sprintf("want <secret> (keys %s and %s, a kubernetes.io/basic-auth Secret) or <secret>/<key> (the password under <key>), naming a Secret in the pod's namespace",
		DefaultUsernameKey, DefaultPasswordKey))
}

func secretRefOf(v, defaultKey, want string) (secretRef, error) {
	v = strings.TrimSpace(v)
	name, key, hasKey := strings.Cut(v, "/")
	if !hasKey {
		key = defaultKey
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return secretRef{}, fmt.Errorf("got %q: %q is not a Secret name; %s", v, name, want)
	}
	if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
		return secretRef{}, fmt.Errorf("got %q: %q is not a Secret key (letters, digits, '-', '_' and '.'); %s", v, key, want)
	}
	return secretRef{Name: name, Key: key}, nil
}

// parseQuantity parses a positive resource quantity.
func parseQuantity(v string) (resource.Quantity, error) {
	q, err := resource.ParseQuantity(strings.TrimSpace(v))
	if err != nil {
		return q, fmt.Errorf("%q is not a quantity such as \"100m\" or \"64Mi\"", v)
	}
	if q.Sign() <= 0 {
		return q, fmt.Errorf("%q: must be more than zero", v)
	}
	return q, nil
}

// parsePort parses a TCP port number.
func parsePort(v string) (int32, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("got %q, want a port number from 1 to 65535", v)
	}
	return int32(n), nil
}
