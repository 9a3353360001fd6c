package agent

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

func TestEventTimeFromTheLine(t *testing.T) {
	s := receiver(t)
	dir := t.TempDir()
	cfg := newConfig(s.Addr(), config.Input{Container: "api", Paths: []string{dir + "/*.json"}, Parser: config.ParserJSON,
		TimeKey: "time", TimeFormat: config.TimeRFC3339})
	appendLines(t, dir+"/a.json",
		`{"time":"2024-05-01T12:30:45.5Z","msg":"backlog"}`,
		`{"time":"last tuesday","msg":"bad time"}`,
		`{"msg":"no time"}`,
		`not json`)
	r := start(t, cfg, t.TempDir())
	wait(t, s, 4)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	byMsg := map[string]time.Time{}
	for _, e := range s.Events() {
		msg, _ := e.Record["msg"].(string)
		if msg == "" {
			msg, _ = e.Record["log"].(string)
		}
		byMsg[msg] = e.Time
	}
	if got, want := byMsg["backlog"], time.Date(2024, 5, 1, 12, 30, 45, 5e8, time.UTC); !got.Equal(want) {
		t.Errorf("backlog record time %v, want the line's %v", got, want)
	}
	for _, m := range []string{"bad time", "no time", "not json"} {
		if got := byMsg[m]; time.Since(got) > time.Minute {
			t.Errorf("%q: time %v, want the time it was read", m, got)
		}
	}
	if n := r.agent.parseErrors.Value(); n != 1 {
		t.Errorf("parse errors %d, want 1", n)
	}
	var b bytes.Buffer
	r.agent.reg.WriteTo(&b)
	if want := `sidelog_time_parse_errors_total{container="api"} 2`; !strings.Contains(b.String(), want) {
		t.Errorf("metrics lack %s:\n%s", want, b.String())
	}
}

// TestRateLimitHoldsOneInputOnly: a container far behind its budget does not hold back another's
// records, and the drain at the stop signal ships its whole backlog, unlimited.
func TestRateLimitHoldsOneInputOnly(t *testing.T) {
	s := receiver(t)
	dir := t.TempDir()
	noisy := make([]string, 1000)
	for i := range noisy {
		noisy[i] = fmt.Sprintf("noisy %d", i)
	}
	appendLines(t, dir+"/noisy.log", noisy...)
	cfg := newConfig(s.Addr(),
		config.Input{Container: "noisy", Paths: []string{dir + "/noisy.log"}, RateLimit: &config.RateLimit{LinesPerSecond: 1}},
		config.Input{Container: "quiet", Paths: []string{dir + "/quiet.log"}})
	r := start(t, cfg, t.TempDir())
	wait(t, s, 1) // the noisy container's burst: one line
	appendLines(t, dir+"/quiet.log", "quiet 0", "quiet 1", "quiet 2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for countOf(s, "quiet") < 3 {
		if ctx.Err() != nil {
			t.Fatalf("the quiet container's lines did not arrive: %d of 3", countOf(s, "quiet"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// At one line a second, the noisy container cannot be near its end: its backlog waits in its
	// file, and the quiet one's lines did not wait for it.
	if n := countOf(s, "noisy"); n >= len(noisy)/2 {
		t.Fatalf("%d noisy lines delivered before the quiet ones; the budget of one a second did not hold", n)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := countOf(s, "noisy"); n != len(noisy) {
		t.Errorf("after the drain %d noisy lines delivered, want all %d", n, len(noisy))
	}
}

// countOf counts the records received whose log starts with prefix.
func countOf(s *forwardtest.Server, prefix string) int {
	n := 0
	for _, e := range s.Events() {
		if l, _ := e.Record["log"].(string); strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// TestDrainLeastBehindFirst: a container far behind its rate limit has a backlog that the drain
// may not ship before its deadline. The drain ships the inputs with the least to ship first, so
// that the quiet container's last lines, written just before the stop, are not left unread
// behind the noisy one's backlog. The aggregator acknowledges nothing: the noisy input's drain
// can only end at the deadline.
func TestDrainLeastBehindFirst(t *testing.T) {
	s, err := forwardtest.Start(forwardtest.Options{ManualAck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dir := t.TempDir()
	noisy := make([]string, 2000)
	for i := range noisy {
		noisy[i] = fmt.Sprintf("noisy %04d %s", i, strings.Repeat("x", 100))
	}
	appendLines(t, dir+"/noisy.log", noisy...)
	cfg := newConfig(s.Addr(),
		config.Input{Container: "noisy", Paths: []string{dir + "/noisy.log"}, RateLimit: &config.RateLimit{LinesPerSecond: 1}},
		config.Input{Container: "quiet", Paths: []string{dir + "/quiet.log"}})
	cfg.DrainTimeout = config.Duration(time.Second)
	cfg.Limits.PollInterval = config.Duration(time.Hour) // quiet.log is found by the drain's scan only
	r := start(t, cfg, t.TempDir())
	wait(t, s, 1) // the first scan is done: the noisy container's burst of one line
	appendLines(t, dir+"/quiet.log", "quiet 0", "quiet 1", "quiet 2")
	r.stop(t) // the drain deadline passes: the noisy backlog is never acknowledged
	if n := countOf(s, "quiet"); n != 3 {
		t.Errorf("%d of the quiet container's 3 last lines sent by the drain, want all: they waited behind the noisy backlog", n)
	}
}
