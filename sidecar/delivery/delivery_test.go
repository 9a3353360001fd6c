package delivery

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWindow: Acquire blocks at the limit until a Release, and Drain waits for the last one.
func TestWindow(t *testing.T) {
	w := NewWindow(2)
	ctx := context.Background()
	for range 2 {
		if err := w.Acquire(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := w.Acquire(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third Acquire = %v, want it blocked until the deadline", err)
	}
	if b, e, err := w.Drain(short); b != 2 || e != 20 || err == nil {
		t.Fatalf("Drain = %d, %d, %v; want 2 batches, 20 entries, the deadline", b, e, err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := w.Drain(ctx); done <- err }()
	w.Release(10)
	if err := w.Acquire(ctx, 5); err != nil {
		t.Fatalf("Acquire after a Release: %v", err)
	}
	w.Release(10)
	w.Release(5)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return once the window was empty")
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 3: 400 * time.Millisecond, 40: time.Second} {
		for range 20 {
			if d := Backoff(n, 100*time.Millisecond, time.Second); d < want/2 || d > want {
				t.Fatalf("Backoff(%d) = %s, want between %s and %s", n, d, want/2, want)
			}
		}
	}
}
