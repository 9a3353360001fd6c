package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

// TestDrainCheckpointsEachAcknowledgedBatch: a native sidecar is stopped after the app
// containers, inside the same grace period, and may be killed before its drain deadline. While
// draining, every acknowledged batch is saved at once, not at the next checkpoint tick, so that a
// kill loses no acknowledged progress.
func TestDrainCheckpointsEachAcknowledgedBatch(t *testing.T) {
	defer func(d time.Duration) { checkpointInterval = d }(checkpointInterval)
	checkpointInterval = time.Hour // only the drain's own saves can write the checkpoint

	dir, state := t.TempDir(), t.TempDir()
	s, err := forwardtest.Start(forwardtest.Options{ManualAck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := newConfig(s.Addr(), config.Input{Container: "app", Paths: []string{dir + "/*.log"}})
	cfg.DrainTimeout = config.Duration(time.Minute)
	appendLines(t, filepath.Join(dir, "app.log"), numbered("line", 0, 2000)...)

	r := start(t, cfg, state)
	r.cancel() // SIGTERM: what is read from now on is drained

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(s.Unacked()) == 0 {
		if ctx.Err() != nil {
			t.Fatal("no batch arrived")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Ack(s.Unacked()[0]); err != nil {
		t.Fatal(err)
	}
	var saved int64
	for saved == 0 && ctx.Err() == nil {
		entries, _ := checkpoint.Load(state)
		for _, e := range entries {
			saved = e.Offset
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-r.done:
		r.done <- err
		t.Fatalf("Run returned (%v) while batches were unacknowledged", err)
	default:
	}
	if saved == 0 {
		t.Error("the first acknowledged batch of the drain was not checkpointed while draining")
	}
	// Let the drain finish.
	for {
		select {
		case err := <-r.done:
			r.done <- err
			if err != nil {
				t.Fatal(err)
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
