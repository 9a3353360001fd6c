// Package budget is the reading budget of one input (one app container): token buckets of bytes
// and of lines per second that the tailer draws on before it reads, so that a container that
// writes faster than its budget is read no faster than it, and the rest waits in its files.
//
// Each bucket holds at most one second of its rate (the burst) and starts full: a container that
// stays under its budget is never slowed, and one that writes in bursts may take up to a second's
// budget at once. The tailer asks before a read how much it may read (Allow), reads at most that
// many bytes and stops after that many lines, and then says what it took (Take). A record longer
// than a second's budget is never stuck: it is read in pieces, the line splitter carrying the
// start, so it passes after as many seconds as its length takes.
//
// Time is an argument of every method, never read from a clock, so that tests drive it.
package budget

import (
	"math"
	"time"
)

// Unlimited is what Allow returns for a dimension without a budget.
const Unlimited = math.MaxInt64

// stepShare is the share of a second's budget that must be available before a read is worth
// making: a throttled input is read about ten times a second, in pieces of a tenth of its
// budget, rather than once per token. Below the budget the buckets stay fuller than that, so
// reading never waits for it.
const stepShare = 10

// Limiter is the budget of one input. The zero of a dimension is no limit on it; a nil *Limiter
// limits nothing. It is used by one goroutine (the tail loop's).
type Limiter struct {
	bytes, lines bucket
}

// New returns the budget of bytesPerSecond and linesPerSecond, either zero for no limit, or nil
// when both are zero. Negative values are taken as zero: the configuration refuses them.
func New(bytesPerSecond, linesPerSecond int64) *Limiter {
	if bytesPerSecond <= 0 && linesPerSecond <= 0 {
		return nil
	}
	return &Limiter{bytes: newBucket(bytesPerSecond), lines: newBucket(linesPerSecond)}
}

// Ready reports whether a read is worth making at now: every limited bucket holds at least a
// tenth of a second of its rate (one token when that is less than one).
func (l *Limiter) Ready(now time.Time) bool {
	if l == nil {
		return true
	}
	return l.bytes.ready(now) && l.lines.ready(now)
}

// Allow returns how many bytes may be read and how many lines handed on at now: the whole tokens
// in each bucket, Unlimited for a dimension without a budget.
func (l *Limiter) Allow(now time.Time) (bytes, lines int64) {
	if l == nil {
		return Unlimited, Unlimited
	}
	return l.bytes.allow(now), l.lines.allow(now)
}

// Take draws what a read consumed from the buckets. It may take more than Allow said (a caller
// that cannot stop in time): the bucket then goes below zero and Allow says 0 until it has
// refilled, so that the average rate holds.
func (l *Limiter) Take(bytes, lines int64) {
	if l == nil {
		return
	}
	l.bytes.take(bytes)
	l.lines.take(lines)
}

// ReadyIn returns how long after now Ready becomes true: zero if it is already.
func (l *Limiter) ReadyIn(now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	return max(l.bytes.readyIn(now), l.lines.readyIn(now))
}

// epsilon absorbs the rounding of float tokens, so that Ready holds at now+ReadyIn.
const epsilon = 1e-6

// bucket is one dimension's token bucket; rate zero is no limit.
type bucket struct {
	rate   float64 // tokens per second; also the capacity: a burst of one second
	step   float64 // tokens that make a read worth it
	tokens float64
	last   time.Time // when tokens was last refilled; zero before the first use
}

func newBucket(rate int64) bucket {
	if rate <= 0 {
		return bucket{}
	}
	r := float64(rate)
	return bucket{rate: r, tokens: r, step: max(1, math.Floor(r/stepShare))}
}

// refill adds what accrued since the last refill, up to the burst. A clock that went back adds
// nothing.
func (b *bucket) refill(now time.Time) {
	if b.last.IsZero() {
		b.last = now
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.rate, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
}

func (b *bucket) ready(now time.Time) bool {
	if b.rate == 0 {
		return true
	}
	b.refill(now)
	return b.tokens+epsilon >= b.step
}

func (b *bucket) allow(now time.Time) int64 {
	if b.rate == 0 {
		return Unlimited
	}
	b.refill(now)
	return int64(max(b.tokens, 0))
}

func (b *bucket) take(n int64) {
	if b.rate != 0 {
		b.tokens -= float64(n)
	}
}

func (b *bucket) readyIn(now time.Time) time.Duration {
	if b.rate == 0 {
		return 0
	}
	b.refill(now)
	if b.tokens+epsilon >= b.step {
		return 0
	}
	// Rounded up, so that Ready holds at now+ReadyIn.
	return time.Duration(math.Ceil((b.step - b.tokens) / b.rate * float64(time.Second)))
}
