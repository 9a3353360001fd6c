package injector

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/sidelog/sidelog/sidecar/config"
)

// The grammar of a rate limit (AnnotationRateLimit, Policy.RateLimit and MaxRateLimit): a byte
// rate, a line rate, both separated by a comma, or none. A byte rate is a positive number and a
// unit, with Kubernetes quantities' suffixes: k, K, M, G (×1000) or Ki, Mi, Gi (×1024), each
// with or without a B, or B alone; then /s. A line rate is a positive whole number and
// "lines/s". Units are case-sensitive, as in Kubernetes ("m" would be milli): "1mb/s" is refused
// rather than guessed.
const (
	rateBytesPattern = `(0*[1-9][0-9]{0,8}(\.[0-9]{1,9})?|0*\.[0-9]{0,8}[1-9][0-9]{0,8})\s*(B|[kKMG]B?|[KMG]iB?)/s`
	rateLinesPattern = `(0*[1-9][0-9]{0,11})\s*lines?/s`
)

// RateLimitPattern is the whole grammar, which the chart's values.schema.json repeats for the
// policy's rateLimit and maxRateLimit: a value it matches is a valid rate limit, and only such.
const RateLimitPattern = `^\s*(none|` + rateBytesPattern + `(\s*,\s*` + rateLinesPattern + `)?|` +
	rateLinesPattern + `(\s*,\s*` + rateBytesPattern + `)?)\s*$`

var (
	rateLimitRE = regexp.MustCompile(RateLimitPattern)
	rateBytesRE = regexp.MustCompile(`^` + rateBytesPattern + `$`)
	rateLinesRE = regexp.MustCompile(`^` + rateLinesPattern + `$`)

	// For rateHint.
	zeroRateRE   = regexp.MustCompile(`^[0.]*\s*[A-Za-z ]*/s$`)
	unitCaseRE   = regexp.MustCompile(`(?i)[0-9.]\s*(kib|mib|gib|kb|mb|gb|ki|mi|gi|b)/`)
	bareNumberRE = regexp.MustCompile(`^[0-9.]+\s*/s`)
)

// rateWant is what a refusal says was expected.
const rateWant = `want bytes and/or lines per second such as "1MiB/s", "500KB/s", "1000 lines/s" or "2Mi/s, 5000 lines/s", or none`

// rateUnits are the byte units' multipliers.
var rateUnits = map[string]float64{
	"B": 1,
	"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
}

// rateLimit is a parsed rate limit: zero fields are no limit on them; text is the value as
// written, for messages.
type rateLimit struct {
	config.RateLimit
	text string
}

func (r rateLimit) none() bool { return r.BytesPerSecond == 0 && r.LinesPerSecond == 0 }

// parseRateLimit parses a rate limit. The error says what was expected, with a hint for the
// usual slips.
func parseRateLimit(v string) (rateLimit, error) {
	r := rateLimit{text: strings.TrimSpace(v)}
	if !rateLimitRE.MatchString(v) {
		return r, fmt.Errorf("got %q, %s%s", v, rateWant, rateHint(v))
	}
	if r.text == "none" {
		return r, nil
	}
	for part := range strings.SplitSeq(r.text, ",") {
		part = strings.TrimSpace(part)
		if m := rateLinesRE.FindStringSubmatch(part); m != nil {
			n, err := strconv.ParseInt(m[1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("got %q: %w", v, err)
			}
			r.LinesPerSecond = n
			continue
		}
		m := rateBytesRE.FindStringSubmatch(part)
		f, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return r, fmt.Errorf("got %q: %w", v, err)
		}
		// Fractions of a byte round up: any rate that is more than zero stays so.
		r.BytesPerSecond = int64(math.Ceil(f * rateUnits[m[3]]))
	}
	return r, nil
}

// rateHint names the usual slip in a value the grammar refused.
func rateHint(v string) string {
	s := strings.TrimSpace(v)
	lower := strings.ToLower(s)
	switch {
	case s == "":
		return ""
	case strings.Count(s, ",") > 1 || strings.Count(lower, "line") > 1 || strings.Count(s, ",") == 1 && !strings.Contains(lower, "line"):
		return " (at most one byte rate and one line rate)"
	case zeroRateRE.MatchString(s):
		return " (a rate must be more than zero; none is no limit)"
	case !strings.Contains(s, "/"):
		return " (a rate per second ends in /s)"
	case unitCaseRE.MatchString(s):
		return " (units are case-sensitive, as in Kubernetes quantities: k, K, M, G, Ki, Mi, Gi, with or without B)"
	case bareNumberRE.MatchString(s):
		return " (say what is counted: B/s for bytes, lines/s for lines)"
	}
	return ""
}

// String writes r as the grammar does, for messages.
func (r rateLimit) String() string {
	if r.text != "" {
		return r.text
	}
	return formatRate(r.RateLimit)
}

// formatRate writes a budget in the grammar, bytes in B/s.
func formatRate(c config.RateLimit) string {
	var parts []string
	if c.BytesPerSecond > 0 {
		parts = append(parts, fmt.Sprintf("%dB/s", c.BytesPerSecond))
	}
	if c.LinesPerSecond > 0 {
		parts = append(parts, fmt.Sprintf("%d lines/s", c.LinesPerSecond))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// checkRateMax reports the first dimension of r above max's, in a message that names both.
func checkRateMax(r, max rateLimit) error {
	switch {
	case max.BytesPerSecond > 0 && r.BytesPerSecond > max.BytesPerSecond:
		return fmt.Errorf("%s reads %d bytes a second, more than the cluster policy's maxRateLimit %s (%d)", r, r.BytesPerSecond, max, max.BytesPerSecond)
	case max.LinesPerSecond > 0 && r.LinesPerSecond > max.LinesPerSecond:
		return fmt.Errorf("%s reads %d lines a second, more than the cluster policy's maxRateLimit %s (%d)", r, r.LinesPerSecond, max, max.LinesPerSecond)
	}
	return nil
}

// resolveRateLimit works out the container's budget: its annotation, its namespace's, else the
// policy's rateLimit; then the policy's maxRateLimit, which holds whatever set the budget: a
// dimension the budget leaves open takes the maximum's, one above it is refused, and so is none.
func (in *input) resolveRateLimit(ps, ns annotationSet, p *Policy, name string) error {
	r, err := parseRateLimit(cmp.Or(p.RateLimit, "none"))
	if err != nil {
		return errorf("rateLimit", FromPolicy, "%v", err) // validate refused it already
	}
	s, set := pick(ps, ns, optRateLimit, name)
	if set {
		r = s.parsed.(rateLimit)
	}
	if p.MaxRateLimit != "" {
		max, err := parseRateLimit(p.MaxRateLimit)
		if err != nil {
			return errorf("maxRateLimit", FromPolicy, "%v", err)
		}
		if set && r.none() && !max.none() {
			return errorf(s.key, s.origin, "the cluster policy's maxRateLimit is %s: a container cannot be read without a limit; set a rate within it", max)
		}
		if err := checkRateMax(r, max); err != nil {
			if set {
				return errorf(s.key, s.origin, "%v", err)
			}
			return errorf("rateLimit", FromPolicy, "%v", err)
		}
		if r.BytesPerSecond == 0 {
			r.BytesPerSecond = max.BytesPerSecond
		}
		if r.LinesPerSecond == 0 {
			r.LinesPerSecond = max.LinesPerSecond
		}
	}
	if !r.none() {
		c := r.RateLimit
		in.rateLimit = &c
	}
	return nil
}

// validateRateLimits checks the policy's rateLimit and maxRateLimit and that the one is within
// the other.
func (p *Policy) validateRateLimits() error {
	var def, max rateLimit
	var err error
	if p.RateLimit != "" {
		if def, err = parseRateLimit(p.RateLimit); err != nil {
			return errorf("rateLimit", FromPolicy, "%v", err)
		}
	}
	if p.MaxRateLimit != "" {
		if max, err = parseRateLimit(p.MaxRateLimit); err != nil {
			return errorf("maxRateLimit", FromPolicy, "%v", err)
		}
	}
	if err := checkRateMax(def, max); err != nil {
		return errorf("rateLimit", FromPolicy, "%v", err)
	}
	return nil
}
