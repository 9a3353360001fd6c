// Package delivery holds what the agent's upstream clients (forward, otlp) share and what does
// not depend on the protocol: the window of batches given to a client and not yet acknowledged,
// which makes Send block (backpressure) and lets Drain wait for the last acknowledgement, and the
// wait between failed attempts.
package delivery

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of the clients' options.
const (
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	DefaultFailback   = time.Minute
)

// Window counts the batches given to a client and not yet reported acknowledged, up to a limit.
// Acquire blocks while the limit is reached; Release frees a place; Drain waits for none to be
// left. Its methods may be called from different goroutines.
type Window struct {
	slots chan struct{}
	wake  chan struct{}

	mu      sync.Mutex
	batches int
	entries int
	// empty is closed while no batch is in the window.
	empty chan struct{}
}

// NewWindow returns a window of limit batches (at least one).
func NewWindow(limit int) *Window {
	w := &Window{slots: make(chan struct{}, max(limit, 1)), wake: make(chan struct{}, 1), empty: make(chan struct{})}
	close(w.empty)
	return w
}

// Acquire takes a place for a batch of entries records, blocking while the window is full, and
// returns ctx.Err() if ctx ends first. The caller queues the batch and then calls Notify.
func (w *Window) Acquire(ctx context.Context, entries int) error {
	select {
	case w.slots <- struct{}{}:
	default:
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	if w.batches == 0 {
		w.empty = make(chan struct{})
	}
	w.batches++
	w.entries += entries
	w.mu.Unlock()
	return nil
}

// Notify tells the client's loop (which selects on Woken) that a batch was queued.
func (w *Window) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Woken receives after Notify.
func (w *Window) Woken() <-chan struct{} { return w.wake }

// Release frees the place of a batch of entries records that was acknowledged (or is done with
// for good), after its acknowledgement was reported, so that Drain returning means the caller
// has seen every report.
func (w *Window) Release(entries int) {
	w.mu.Lock()
	w.batches--
	w.entries -= entries
	if w.batches == 0 {
		close(w.empty)
	}
	w.mu.Unlock()
	<-w.slots
}

// Drain waits until the window is empty or ctx ends; it returns the number of batches and
// entries still in it, and ctx's error if it ended first.
func (w *Window) Drain(ctx context.Context) (batches, entries int, err error) {
	for {
		w.mu.Lock()
		batches, entries, empty := w.batches, w.entries, w.empty
		w.mu.Unlock()
		if batches == 0 {
			return 0, 0, nil
		}
		select {
		case <-empty:
		case <-ctx.Done():
			w.mu.Lock()
			batches, entries = w.batches, w.entries
			w.mu.Unlock()
			if batches == 0 {
				return 0, 0, nil
			}
			return batches, entries, ctx.Err()
		}
	}
}

// Backoff returns the wait before attempt n+1 after n consecutive failures: min doubled per
// failure up to max, half of it random so that agents restarted together spread out.
func Backoff(n int, min, max time.Duration) time.Duration {
	d := max
	if n-1 < 32 {
		if e := min << max0(n-1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}

// Sleep waits d and reports true, or false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
