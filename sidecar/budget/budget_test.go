package budget

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestNilLimitsNothing(t *testing.T) {
	var l *Limiter = New(0, 0)
	if l != nil {
		t.Fatalf("New(0, 0) = %v, want nil", l)
	}
	if b, n := l.Allow(t0); b != Unlimited || n != Unlimited {
		t.Errorf("Allow = %d, %d, want Unlimited", b, n)
	}
	if !l.Ready(t0) || l.ReadyIn(t0) != 0 {
		t.Error("a nil limiter is not ready")
	}
	l.Take(1, 1) // must not panic
}

func TestBurstIsOneSecond(t *testing.T) {
	l := New(1000, 0)
	if b, n := l.Allow(t0); b != 1000 || n != Unlimited {
		t.Fatalf("a new budget allows %d bytes, %d lines; want 1000 (full) and Unlimited", b, n)
	}
	l.Take(1000, 5)
	if b, _ := l.Allow(t0); b != 0 {
		t.Fatalf("after taking it all: %d, want 0", b)
	}
	if b, _ := l.Allow(at(250 * time.Millisecond)); b != 250 {
		t.Errorf("a quarter second later: %d, want 250", b)
	}
	if b, _ := l.Allow(at(time.Hour)); b != 1000 {
		t.Errorf("an hour later: %d, want the one-second burst 1000", b)
	}
}

func TestLinesAndBytesAreIndependent(t *testing.T) {
	l := New(0, 10)
	if b, n := l.Allow(t0); b != Unlimited || n != 10 {
		t.Fatalf("Allow = %d, %d; want Unlimited bytes, 10 lines", b, n)
	}
	l.Take(1<<30, 10)
	if b, n := l.Allow(t0); b != Unlimited || n != 0 {
		t.Errorf("after 10 lines: Allow = %d, %d; want Unlimited, 0", b, n)
	}
	if l.Ready(t0) {
		t.Error("ready with no line left")
	}
	l = New(100, 10)
	l.Take(100, 0)
	if b, n := l.Allow(t0); b != 0 || n != 10 {
		t.Errorf("both limited, bytes spent: Allow = %d, %d; want 0, 10", b, n)
	}
}

// TestReadyInIsWhenReady: a throttled input is woken when a tenth of a second's budget is back,
// not before (it would read crumbs) and not later (it would read in bursts).
func TestReadyInIsWhenReady(t *testing.T) {
	for _, tt := range []struct {
		bytes, lines int64
		want         time.Duration
	}{
		{1 << 20, 0, 100 * time.Millisecond},
		{0, 1000, 100 * time.Millisecond},
		{0, 5, 200 * time.Millisecond}, // below ten a second: one line's time
		{1 << 20, 5, 200 * time.Millisecond},
	} {
		l := New(tt.bytes, tt.lines)
		l.Take(tt.bytes, tt.lines)
		w := l.ReadyIn(t0)
		if w < tt.want-time.Microsecond || w > tt.want+time.Microsecond {
			t.Errorf("%d B/s, %d lines/s: ReadyIn = %v, want %v", tt.bytes, tt.lines, w, tt.want)
		}
		if l.Ready(at(w - time.Millisecond)) {
			t.Errorf("%d B/s, %d lines/s: ready before ReadyIn", tt.bytes, tt.lines)
		}
		if !l.Ready(at(w)) || l.ReadyIn(at(w)) != 0 {
			t.Errorf("%d B/s, %d lines/s: not ready at ReadyIn", tt.bytes, tt.lines)
		}
	}
}

// TestOverdraftIsRepaid: a record larger than the burst is taken whole (the caller could not
// stop inside it); the bucket goes below zero and allows nothing until it is repaid.
func TestOverdraftIsRepaid(t *testing.T) {
	l := New(1000, 0)
	l.Allow(t0)
	l.Take(3000, 0) // 2000 below zero
	for _, d := range []time.Duration{time.Second, 2 * time.Second} {
		if b, _ := l.Allow(at(d)); b != 0 {
			t.Errorf("%v later: %d, want 0 while repaying", d, b)
		}
	}
	if b, _ := l.Allow(at(2500 * time.Millisecond)); b != 500 {
		t.Errorf("2.5s later: %d, want 500", b)
	}
}

func TestClockGoingBackAddsNothing(t *testing.T) {
	l := New(1000, 0)
	l.Allow(at(time.Second))
	l.Take(1000, 0)
	if b, _ := l.Allow(t0); b != 0 {
		t.Errorf("clock back a second: %d, want 0", b)
	}
	if b, _ := l.Allow(at(time.Second + 100*time.Millisecond)); b != 100 {
		t.Errorf("then 100ms after the latest time seen: %d, want 100", b)
	}
}

// TestRateUnderPressure drives the limiter as the tail loop does a file written at ten times the
// budget: wake at ReadyIn, read what Allow says. Over a simulated minute the bytes read are the
// budget's, give or take the one-second burst and a step.
func TestRateUnderPressure(t *testing.T) {
	const rate = 100 << 10
	for _, lines := range []int64{0, 50} {
		l := New(rate, lines)
		var read, lineCount int64
		backlog := int64(0)
		now := t0
		end := at(time.Minute)
		for now.Before(end) {
			backlog += 10 * rate / 100 // written in the 10ms since the last loop
			if l.Ready(now) {
				b, n := l.Allow(now)
				take := min(b, backlog)
				// Lines of 100 bytes: stop after n of them.
				if n != Unlimited {
					take = min(take, n*100)
				}
				l.Take(take, take/100)
				read += take
				lineCount += take / 100
				backlog -= take
			}
			now = now.Add(max(l.ReadyIn(now), 10*time.Millisecond))
		}
		want := int64(rate * 60)
		if lines > 0 {
			want = lines * 60 * 100
		}
		burst := want / 60
		if read < want-burst/10 || read > want+burst {
			t.Errorf("lines %d: read %d bytes in a minute, want %d (+ up to a second's burst)", lines, read, want)
		}
		if lines > 0 && (lineCount < lines*60 || lineCount > lines*61) {
			t.Errorf("read %d lines in a minute, want %d", lineCount, lines*60)
		}
	}
}
