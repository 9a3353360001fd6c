package injector

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/find"
)

// The fuzz targets run their seed corpus (testdata/fuzz/<target>) as ordinary tests; run one
// for real with: go test -run=NONE -fuzz=FuzzAnnotations -fuzztime=30s ./injector/

// validInput is an agent config input around in, to check it with config.Validate.
func validInput(in config.Input) error {
	c := config.Config{Version: config.Version, Inputs: []config.Input{in}, Upstream: config.Upstream{Servers: []string{"a:1"}}}
	return c.Validate()
}

func FuzzParseGlobs(f *testing.F) {
	f.Add("/var/log/app/*.log")
	f.Fuzz(func(t *testing.T, v string) {
		globs, err := parseGlobs(v, defaultMaxGlobs)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if len(globs) == 0 || len(globs) > defaultMaxGlobs {
			t.Fatalf("%d globs from %q", len(globs), v)
		}
		for i, g := range globs {
			if err := config.CheckGlob(g); err != nil {
				t.Fatalf("accepted %q, which the agent refuses: %v", g, err)
			}
			if slices.Contains(globs[:i], g) {
				t.Fatalf("%q twice", g)
			}
			if !strings.Contains(v, g) {
				t.Fatalf("glob %q is not in the value %q", g, v)
			}
			p := staticPrefix(g)
			if p != g && !below(g, p) || strings.ContainsAny(p, `*?[\`) || path.Clean(p) != p {
				t.Fatalf("staticPrefix(%q) = %q", g, p)
			}
		}
		if err := validInput(config.Input{Container: "c", Paths: globs, Exclude: globs}); err != nil {
			t.Fatalf("agent config refuses %q: %v", globs, err)
		}
	})
}

func FuzzParseUpstream(f *testing.F) {
	f.Add("fluentd.logging:24224,10.0.0.1:24224")
	f.Add("http://otel.observability:4318,https://[::1]:4318/otlp/v1/logs")
	f.Fuzz(func(t *testing.T, v string) {
		servers, err := parseUpstream(v, defaultMaxUpstreams)
		if err != nil {
			return
		}
		if len(servers) == 0 || len(servers) > defaultMaxUpstreams {
			t.Fatalf("%d servers from %q", len(servers), v)
		}
		// Whichever protocol the entries are for (a mixed list is refused at resolution).
		protocol := config.ProtocolForward
		if checkUpstreamProtocol(servers, protocol) != nil {
			protocol = config.ProtocolOTLP
			if checkUpstreamProtocol(servers, protocol) != nil {
				return
			}
		}
		c := config.Config{Version: config.Version, Inputs: []config.Input{{Container: "c", Paths: []string{"/x"}}}, Upstream: config.Upstream{Protocol: protocol, Servers: servers}}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted %q, which the agent refuses: %v", servers, err)
		}
	})
}

func FuzzParseMultiline(f *testing.F) {
	f.Add("java")
	f.Fuzz(func(t *testing.T, v string) {
		m, err := parseMultiline(v)
		if err != nil || m == nil {
			if err == nil && !strings.EqualFold(strings.TrimSpace(v), multilineNone) {
				t.Fatalf("%q: no multiline and no error", v)
			}
			return
		}
		if (m.Preset == "") == (m.FirstLine == "") {
			t.Fatalf("%q: want exactly one of preset and firstLine, got %+v", v, m)
		}
		if err := validInput(config.Input{Container: "c", Paths: []string{"/x"}, Multiline: m}); err != nil {
			t.Fatalf("accepted %q, which the agent refuses: %v", v, err)
		}
	})
}

// FuzzAnnotations adds one arbitrary annotation to a pod that asks for the agent. Whatever it
// is, Inject must not panic or touch its input; an error must name a sidelog annotation; a
// success must give the agent a config it accepts, and injecting again must change nothing.
func FuzzAnnotations(f *testing.F) {
	f.Add("sidelog.io/multiline.app", "java")
	f.Fuzz(func(t *testing.T, key, value string) {
		pod := basePod(tailApp(key, value))
		before := pod.DeepCopy()
		ns := map[string]string{AnnotationParser: "json"}
		out, o, err := Inject(pod, ns, nil)
		if !cmp.Equal(before, pod) {
			t.Fatal("Inject modified its input")
		}
		if err != nil {
			if !strings.Contains(err.Error(), Prefix) {
				t.Fatalf("error names no annotation: %v", err)
			}
			return
		}
		if !o.Injected {
			if o.Reason == "" {
				t.Fatal("not injected, and no reason")
			}
			return
		}
		a := agentOf(out)
		if a == nil {
			t.Fatal("injected, but no agent")
		}
		agentConfigOf(t, a)
		again, _, err := Inject(out, ns, nil)
		if err != nil {
			t.Fatalf("second Inject: %v", err)
		}
		if diff := cmp.Diff(out, again); diff != "" {
			t.Fatalf("second Inject changed the pod:\n%s", diff)
		}
		// Without the namespace's defaults the agent is made anew, as if injected first so.
		anew, _, errAnew := Inject(out, nil, nil)
		direct, _, errDirect := Inject(pod, nil, nil)
		if (errAnew == nil) != (errDirect == nil) {
			t.Fatalf("re-injection error %v, direct injection error %v", errAnew, errDirect)
		}
		if errAnew == nil {
			if diff := cmp.Diff(direct, anew); diff != "" {
				t.Fatalf("re-injected pod differs from one injected directly (-direct +anew):\n%s", diff)
			}
		}
	})
}

// FuzzParsePolicy: a policy that parses survives a round trip through YAML unchanged.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("sidecarMode: auto\nkubernetesVersion: v1.28.1\n"))
	f.Add([]byte("rateLimit: 1MiB/s\nmaxRateLimit: 4MiB/s, 20000 lines/s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			return
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParsePolicy(out)
		if err != nil {
			t.Fatalf("ParsePolicy of its own output: %v\n%s", err, out)
		}
		if diff := cmp.Diff(p, again); diff != "" {
			t.Fatalf("round trip changed the policy:\n%s", diff)
		}
	})
}

// FuzzParseRateLimit: a value is taken only when the grammar that the chart's schema repeats
// matches it, never panics, and a taken value is a budget the agent accepts, positive unless it
// is none, and the same when written back and read again.
func FuzzParseRateLimit(f *testing.F) {
	for _, s := range []string{"1MiB/s", "500KB/s", "1000 lines/s", "2Mi/s, 5000 lines/s", "none", "0.5B/s", "1mb/s", "1MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := parseRateLimit(v)
		if matched := rateLimitRE.MatchString(v); (err == nil) != matched {
			t.Fatalf("%q: grammar match %v, parse error %v", v, matched, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "want") {
				t.Fatalf("%q: error says nothing of what was expected: %v", v, err)
			}
			return
		}
		if r.BytesPerSecond < 0 || r.LinesPerSecond < 0 || r.none() != (strings.TrimSpace(v) == "none") {
			t.Fatalf("%q: %+v", v, r.RateLimit)
		}
		// formatRate writes bytes in B/s, which the grammar takes up to nine digits.
		if back, err := parseRateLimit(formatRate(r.RateLimit)); r.BytesPerSecond < 1e9 && (err != nil || back.RateLimit != r.RateLimit) {
			t.Fatalf("%q: written back as %q, read as %+v, %v", v, formatRate(r.RateLimit), back.RateLimit, err)
		}
		c := config.Config{Version: config.Version, Inputs: []config.Input{{Container: "c", Paths: []string{"/x"}, RateLimit: &r.RateLimit}},
			Upstream: config.Upstream{Servers: []string{"a:1"}}}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted %q, which the agent refuses: %v", v, err)
		}
	})
}

// FuzzGlobCovers checks that globCovers never claims a containment that a path disproves: a
// path that inner matches, as the agent matches, is matched by outer. The agent relies on it to
// remove only files that it tails (sidelog.io/cleanup).
func FuzzGlobCovers(f *testing.F) {
	f.Add("/var/log/app/app.log*", "/var/log/app/app.log.*", "/var/log/app/app.log.1")
	f.Add("/var/log/**/*.log", "/var/log/app/app.*.log", "/var/log/app/app.2024-05-01.0.log")
	f.Add("/var/log/app/app.log.[0-9]", "/var/log/app/app.log.?", "/var/log/app/app.log.x")
	f.Add("/var/log/app/*", "/var/log/app/\\*", "/var/log/app/*")
	f.Fuzz(func(t *testing.T, outer, inner, name string) {
		if config.CheckGlob(outer) != nil || config.CheckGlob(inner) != nil || config.CheckGlob(name) != nil || !globCovers(outer, inner) {
			return
		}
		in, err := find.New([]string{inner}, nil)
		if err != nil || !in.Match(name) {
			return
		}
		out, err := find.New([]string{outer}, nil)
		if err != nil || !out.Match(name) {
			t.Fatalf("globCovers(%q, %q), but %q matches only the second", outer, inner, name)
		}
	})
}

func FuzzParseCleanup(f *testing.F) {
	f.Add("/var/log/app/app.log.*,/var/log/app/app.*.log")
	f.Add("/var/log/app/*")
	f.Add("/var/log/app/app.log.*.gz")
	f.Fuzz(func(t *testing.T, v string) {
		globs, err := parseCleanup(v, defaultMaxGlobs)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		for _, g := range globs {
			if err := config.CheckGlob(g); err != nil {
				t.Fatalf("accepted %q, which the agent refuses: %v", g, err)
			}
			name := path.Base(g)
			if strings.Trim(name, "*?") == "" || strings.HasSuffix(name, ".gz") {
				t.Fatalf("accepted %q, which matches every file of its directory or compressed ones", g)
			}
			if len(g) > maxCleanupBytes || strings.Count(g, "/") > maxCleanupDepth {
				t.Fatalf("accepted %q, beyond the bounds that keep comparing it with the tail globs cheap", g)
			}
		}
		if err := validInput(config.Input{Container: "c", Paths: globs, Cleanup: globs}); err != nil {
			t.Fatalf("agent config refuses %q: %v", globs, err)
		}
	})
}
