package agent

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
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
