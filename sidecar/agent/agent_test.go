package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
	"github.com/sidelog/sidelog/sidecar/record"
)

var testPod = record.Pod{Namespace: "shop", Name: "web-1", UID: "uid-1", Node: "node-1", Labels: map[string]string{"app": "web"}}

// newConfig returns a configuration with fast timers, so that tests wait for behaviour, not for
// production intervals.
func newConfig(upstream string, inputs ...config.Input) *config.Config {
	doc := &config.Config{
		Version:      config.Version,
		Inputs:       inputs,
		Upstream:     config.Upstream{Servers: []string{upstream}, AckTimeout: config.Duration(2 * time.Second)},
		DrainTimeout: config.Duration(5 * time.Second),
		Limits: config.Limits{
			BatchBytes:    4 << 10,
			FlushInterval: config.Duration(20 * time.Millisecond),
			PollInterval:  config.Duration(10 * time.Millisecond),
		},
	}
	b, err := doc.Encode()
	if err != nil {
		panic(err)
	}
	c, err := config.Parse(b)
	if err != nil {
		panic(err)
	}
	return c
}

type running struct {
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg *config.Config, stateDir string) *running {
	t.Helper()
	a, err := New(cfg, Options{StateDir: stateDir, Pod: testPod, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// stop sends the equivalent of SIGTERM and returns what Run returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(time.Minute):
		t.Fatal("agent did not stop within a minute of its context ending")
		return nil
	}
}

func receiver(t *testing.T) *forwardtest.Server {
	t.Helper()
	s, err := forwardtest.Start(forwardtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wait(t *testing.T, s *forwardtest.Server, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Wait(ctx, n); err != nil {
		t.Fatalf("waiting for %d records, got %d: %v", n, s.Count(), err)
	}
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s %05d", prefix, i))
	}
	return out
}

// logs returns the "log" field of every event of container, in arrival order.
func logs(s *forwardtest.Server, container string) []string {
	var out []string
	for _, e := range s.Events() {
		k, _ := e.Record["kubernetes"].(map[string]any)
		if k["container_name"] == container {
			out = append(out, fmt.Sprint(e.Record["log"]))
		}
	}
	return out
}

func TestEveryLineArrivesAcrossRotationAndDrain(t *testing.T) {
	dir := t.TempDir()
	appDir, apiDir := filepath.Join(dir, "app"), filepath.Join(dir, "api")
	for _, d := range []string{appDir, apiDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := receiver(t)
	cfg := newConfig(s.Addr(),
		config.Input{Container: "app", Paths: []string{appDir + "/*.log"}, Multiline: &config.Multiline{Preset: "java"}},
		config.Input{Container: "api", Paths: []string{apiDir + "/**/*.json"}, Parser: config.ParserJSON},
	)
	appLog := filepath.Join(appDir, "app.log")
	// Written before the agent starts: a short-lived pod's first lines must not be lost.
	appendLines(t, appLog, numbered("before start", 0, 100)...)
	r := start(t, cfg, t.TempDir())
	// Rotating a file the agent has not opened yet would hide it from any tailer; a real rotation
	// comes long after the agent started.
	wait(t, s, 100)

	trace := "2026-11-25 10:00:00 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat shop.Cart.add(Cart.java:42)\n\tat shop.Api.handle(Api.java:7)"
	appendLines(t, appLog, trace)
	appendLines(t, appLog, numbered("after trace", 0, 2000)...)
	// Rename-and-create, as logrotate does by default; app.log.1 is not matched by the glob.
	if err := os.Rename(appLog, appLog+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, appLog, numbered("after rotation", 0, 500)...)
	if err := os.MkdirAll(filepath.Join(apiDir, "v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	appendLines(t, filepath.Join(apiDir, "v1", "access.json"), `{"status":200,"path":"/cart","user":{"id":7}}`, `not json`)
	wait(t, s, 100+1+2000+500+2)

	// Lines written just before SIGTERM, the last one without a newline, must still leave.
	appendLines(t, appLog, "last words")
	f, err := os.OpenFile(appLog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("no newline at the end")
	f.Close()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run after a clean drain = %v, want nil", err)
	}

	want := numbered("before start", 0, 100)
	want = append(want, trace)
	want = append(want, numbered("after trace", 0, 2000)...)
	want = append(want, numbered("after rotation", 0, 500)...)
	want = append(want, "last words", "no newline at the end")
	// Order holds within a file, not across a rotation: the rotated file's last multiline record
	// waits for its flush timeout while the new file is read.
	got := logs(s, "app")
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("app records, lost (-) or duplicated (+):\n%s", diff)
	}
	for _, prefix := range []string{"before start", "after trace", "after rotation"} {
		if diff := cmp.Diff(only(want, prefix), only(got, prefix)); diff != "" {
			t.Errorf("records %q out of order (-want +got):\n%s", prefix, diff)
		}
	}

	var api []map[string]any
	for _, e := range s.Events() {
		if e.Record["kubernetes"].(map[string]any)["container_name"] == "api" {
			api = append(api, e.Record)
			if e.Tag != "kube.shop.web-1.api" {
				t.Errorf("api tag = %q", e.Tag)
			}
		}
	}
	if len(api) != 2 {
		t.Fatalf("got %d api records, want 2: %v", len(api), api)
	}
	kube := map[string]any{
		"namespace_name": "shop", "pod_name": "web-1", "pod_id": "uid-1", "container_name": "api",
		"host": "node-1", "labels": map[string]any{"app": "web"},
	}
	wantJSON := map[string]any{"status": int64(200), "path": "/cart", "user": map[string]any{"id": int64(7)},
		"file": filepath.Join(apiDir, "v1", "access.json"), "kubernetes": kube}
	if diff := cmp.Diff(normalize(wantJSON), normalize(api[0])); diff != "" {
		t.Errorf("parsed JSON record (-want +got):\n%s", diff)
	}
	if api[1]["log"] != "not json" {
		t.Errorf("a line that is not JSON: record = %v, want it kept as log", api[1])
	}
	if n := r.agent.parseErrors.Value(); n != 1 {
		t.Errorf("parse errors counted: %d, want 1 (the line that is not JSON)", n)
	}
}

// normalize round-trips v through JSON, so that msgpack integers compare by value whatever width
// the decoder chose.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func only(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func TestRestartResumesAfterTheAcknowledgedLines(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	s := receiver(t)
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}})
	path := filepath.Join(dir, "app.log")

	appendLines(t, path, numbered("first run", 0, 300)...)
	r := start(t, cfg, state)
	wait(t, s, 300)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	appendLines(t, path, numbered("while down", 0, 300)...)
	r = start(t, cfg, state)
	wait(t, s, 600)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	want := append(numbered("first run", 0, 300), numbered("while down", 0, 300)...)
	if diff := cmp.Diff(want, logs(s, "app")); diff != "" {
		t.Errorf("records across a restart (-want +got):\n%s", diff)
	}
}

func TestDrainDeadlineWithUpstreamDownThenResume(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	s := receiver(t)
	s.Down()
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}})
	cfg.DrainTimeout = config.Duration(500 * time.Millisecond)
	path := filepath.Join(dir, "app.log")
	appendLines(t, path, numbered("unsent", 0, 1000)...)

	r := start(t, cfg, state)
	err := r.stop(t)
	// 1000 lines of 13 bytes, none acknowledged.
	if err == nil || !strings.Contains(err.Error(), "13000 bytes in 1 file(s) unacknowledged") {
		t.Fatalf("Run with the upstream down = %v, want an error saying how much was unacknowledged", err)
	}

	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	r = start(t, cfg, state)
	wait(t, s, 1000)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(numbered("unsent", 0, 1000), logs(s, "app")); diff != "" {
		t.Errorf("records after the upstream came back (-want +got):\n%s", diff)
	}
}

// A batch that is not full leaves once the flush interval has passed, without waiting for the next
// poll: with a poll interval of an hour, the records arrive only if the loop wakes up for the flush.
func TestPartialBatchLeavesAtTheFlushIntervalNotAtTheNextPoll(t *testing.T) {
	dir := t.TempDir()
	s := receiver(t)
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}})
	cfg.Limits.PollInterval = config.Duration(time.Hour)
	appendLines(t, filepath.Join(dir, "app.log"), numbered("partial", 0, 10)...)
	start(t, cfg, t.TempDir())
	wait(t, s, 10)
	if diff := cmp.Diff(numbered("partial", 0, 10), logs(s, "app")); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// An agent with nothing new acknowledged does not rewrite and sync its checkpoint every second.
// Removing the file after the first save shows it: a save that wrote would bring it back.
func TestUnchangedCheckpointIsNotRewritten(t *testing.T) {
	state := t.TempDir()
	cfg := newConfig("127.0.0.1:1", config.Input{Container: "app", Paths: []string{t.TempDir() + "/*.log"}})
	a, err := New(cfg, Options{StateDir: state, Pod: testPod, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.saveCheckpoint(); err != nil {
		t.Fatal(err)
	}
	path := checkpoint.Path(state)
	if err := os.Remove(path); err != nil {
		t.Fatalf("the first save wrote no checkpoint: %v", err)
	}
	if err := a.saveCheckpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a save with the same positions wrote the checkpoint again (stat: %v)", err)
	}
}

// TestLabelsFollowThePod: the kubelet rewrites the labels file when the pod's labels change;
// records read after that carry the new labels, and those read before keep the old ones.
func TestLabelsFollowThePod(t *testing.T) {
	old := labelsInterval
	labelsInterval = 10 * time.Millisecond
	t.Cleanup(func() { labelsInterval = old })

	dir := t.TempDir()
	labelsFile := filepath.Join(dir, "labels")
	writeLabels := func(content string) {
		// As the kubelet does: a new file put in place whole.
		tmp := labelsFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, labelsFile); err != nil {
			t.Fatal(err)
		}
	}
	writeLabels(`app="web"` + "\n")
	s := receiver(t)
	appDir := filepath.Join(dir, "app")
	if err := os.Mkdir(appDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{appDir + "/*.log"}})
	cfg.LabelsFile = labelsFile
	r := start(t, cfg, t.TempDir())
	appLog := filepath.Join(appDir, "app.log")
	appendLines(t, appLog, "before the change")
	wait(t, s, 1)

	writeLabels(`app="web"` + "\n" + `track="canary"` + "\n")
	labelsOf := func(e int) map[string]any {
		k, _ := s.Events()[e].Record["kubernetes"].(map[string]any)
		l, _ := k["labels"].(map[string]any)
		return l
	}
	deadline := time.Now().Add(time.Minute)
	for n := 1; ; n++ {
		appendLines(t, appLog, fmt.Sprintf("after the change %d", n))
		wait(t, s, int64(n+1))
		if labelsOf(n)["track"] == "canary" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record carries the new label a minute after the labels file changed: %v", labelsOf(n))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := labelsOf(0); len(l) != 1 || l["app"] != "web" {
		t.Errorf("the record read before the change has labels %v, want only app=web", l)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
