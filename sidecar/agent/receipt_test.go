package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

// runWithReceipt runs an agent that writes its receipt to a file, stops it once want records
// arrived (want < 0: at once) and returns what Run returned and the receipt it wrote.
func runWithReceipt(t *testing.T, cfg *config.Config, s *forwardtest.Server, want int64) (error, receipt.Receipt) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "termination-log")
	a, err := New(cfg, Options{StateDir: t.TempDir(), Pod: testPod, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReceiptFile: file, Version: "v9.9.9-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if want >= 0 {
		wait(t, s, want)
	}
	cancel()
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(time.Minute):
		t.Fatal("agent did not stop within a minute of its context ending")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > receipt.MaxBytes {
		t.Errorf("receipt of %d bytes, more than %d", len(b), receipt.MaxBytes)
	}
	r, err := receipt.Parse(string(b))
	if err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return runErr, r
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestReceiptCountsWhatWasDelivered: the receipt of an agent that drained says, per container and
// summed over its files, every line and byte delivered, nothing pending, and what was dropped by
// reason, as the tailer counted it.
func TestReceiptCountsWhatWasDelivered(t *testing.T) {
	appDir, sideDir := t.TempDir(), t.TempDir()
	s := receiver(t)
	cfg := newConfig(s.Addr(),
		config.Input{Container: "app", Paths: []string{appDir + "/*.log"}},
		config.Input{Container: "side", Paths: []string{sideDir + "/*.log"}})
	cfg.Limits.MaxLineBytes = 1024
	appLog, auditLog, sideLog := filepath.Join(appDir, "app.log"), filepath.Join(appDir, "audit.log"), filepath.Join(sideDir, "side.log")
	appendLines(t, appLog, numbered("app", 0, 300)...)
	appendLines(t, appLog, strings.Repeat("x", 3000)) // cut to 1024 bytes: one line_too_long drop
	appendLines(t, auditLog, numbered("audit", 0, 50)...)
	appendLines(t, sideLog, numbered("side", 0, 10)...)

	err, got := runWithReceipt(t, cfg, s, 361)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(logs(s, "app")); n != 351 {
		t.Fatalf("the receiver got %d records of app, want 351", n)
	}
	want := receipt.Receipt{
		Schema: receipt.SchemaVersion, Agent: "v9.9.9-test", Drained: true,
		Containers: []receipt.Container{
			{Name: "app", Counts: receipt.Counts{Lines: 351, Bytes: fileSize(t, appLog) + fileSize(t, auditLog), Files: 2,
				Dropped: 1, DroppedBytes: 3000 - 1024, DroppedBy: map[string]int64{"line_too_long": 1}}},
			{Name: "side", Counts: receipt.Counts{Lines: 10, Bytes: fileSize(t, sideLog), Files: 1}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("receipt (-want +got):\n%s", diff)
	}
}

// TestReceiptOfADrainThatRanOutOfTime: an aggregator that never acknowledges leaves everything
// pending; the receipt says the drain did not finish, and why.
func TestReceiptOfADrainThatRanOutOfTime(t *testing.T) {
	dir := t.TempDir()
	s, err := forwardtest.Start(forwardtest.Options{ManualAck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}})
	cfg.DrainTimeout = config.Duration(300 * time.Millisecond)
	path := filepath.Join(dir, "app.log")
	appendLines(t, path, numbered("line", 0, 100)...)

	runErr, got := runWithReceipt(t, cfg, s, -1)
	if runErr == nil {
		t.Fatal("Run returned nil with nothing acknowledged")
	}
	if got.Drained {
		t.Error("drained: true with nothing acknowledged")
	}
	if got.Error == "" || !strings.Contains(runErr.Error(), got.Error[:min(len(got.Error), 40)]) {
		t.Errorf("error %q does not say what Run returned (%v)", got.Error, runErr)
	}
	if len(got.Containers) != 1 {
		t.Fatalf("containers: %+v", got.Containers)
	}
	c := got.Containers[0]
	if c.Lines != 0 || c.Bytes != 0 || c.PendingBytes != fileSize(t, path) || c.PendingFiles != 1 {
		t.Errorf("app: %+v, want nothing delivered and the whole file (%d bytes) pending", c.Counts, fileSize(t, path))
	}
}

// TestReceiptAsTheDrainStarts: a native sidecar may be killed before its drain ends; the receipt
// written as the drain starts is then what the pod's status keeps: not drained, what was read and
// not acknowledged pending. The one written at the end replaces it.
func TestReceiptAsTheDrainStarts(t *testing.T) {
	dir := t.TempDir()
	s, err := forwardtest.Start(forwardtest.Options{ManualAck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}})
	cfg.DrainTimeout = config.Duration(time.Minute)
	path := filepath.Join(dir, "app.log")
	// One batch: a Send blocked behind the in-flight limit at the signal would hold the tail loop,
	// and the receipt, until an acknowledgement comes (see Run).
	appendLines(t, path, numbered("line", 0, 10)...)

	file := filepath.Join(t.TempDir(), "termination-log")
	a, err := New(cfg, Options{StateDir: t.TempDir(), Pod: testPod, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ReceiptFile: file})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for len(s.Unacked()) == 0 { // read and sent, not acknowledged
		if time.Now().After(deadline) {
			t.Fatal("no batch arrived")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()

	var first receipt.Receipt
	for {
		b, _ := os.ReadFile(file)
		if r, err := receipt.Parse(string(b)); err == nil {
			first = r
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no receipt while draining")
		}
		time.Sleep(time.Millisecond)
	}
	if first.Drained || len(first.Containers) != 1 || first.Containers[0].PendingBytes != fileSize(t, path) {
		t.Errorf("receipt while draining: %+v, want not drained and the whole file (%d bytes) pending", first, fileSize(t, path))
	}

	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(file)
			last, err := receipt.Parse(string(b))
			if err != nil {
				t.Fatal(err)
			}
			if !last.Drained || last.Containers[0].PendingBytes != 0 || last.Containers[0].Lines != 10 {
				t.Errorf("final receipt %s, want drained, 10 lines, nothing pending", b)
			}
			return
		default:
		}
		for _, c := range s.Unacked() {
			_ = s.Ack(c)
		}
		time.Sleep(time.Millisecond)
	}
}
