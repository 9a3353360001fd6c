package agent

import (
	"context"
	"sync"

	"github.com/sidelog/sidelog/sidecar/otlp"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

// Run tails and forwards until ctx ends, then drains: it stops looking for new files, reads what
// is left to the end, waits for the last acknowledgements within the drain timeout, saves the
// checkpoint and returns. The error says how much was left unacknowledged if the deadline passed.
//
// When Options.ReceiptFile is set, it writes the delivery receipt there as the drain starts (what
// the pod's status shows if the agent is killed before it ends) and again when it returns. The
// first is written by the tail loop once it sees the signal: if it was then waiting for the
// aggregator to take a batch (every batch in flight unacknowledged), that is after an
// acknowledgement or at the drain deadline, and a kill before either leaves no receipt.
func (a *Agent) Run(ctx context.Context) error {
	err := a.run(ctx)
	a.writeReceipt(err)
	return err
}

// maxCountedFiles bounds the paths a receipt counts per input, so that an agent that lives long
// beside an app rotating to ever new names keeps a bounded memory.
const maxCountedFiles = 1 << 16

// delivered counts what was acknowledged of one input, for its receipt. Acknowledgements come on
// the forward client's goroutine; the receipt is built on Run's.
type delivered struct {
	mu           sync.Mutex
	lines, bytes int64
	paths        map[string]struct{}
	// rejected are the records the upstream refused (OTLP), by the reason of the client's
	// sidelog_dropped_total; rejectedBytes the bytes of batches refused whole.
	rejected      map[string]int64
	rejectedBytes int64
	// pending is what the drain left unacknowledged, taken before the files are closed; Run's
	// goroutine only.
	pending *unacked
}

type unacked struct {
	bytes int64
	files int
}

// acked counts an acknowledged batch of count records, of which the upstream refused rejected
// (OTLP: done with, but dropped). It must be called before the files' acknowledged offsets move
// to the batch's ends: the bytes are the distance they move.
func (d *delivered) acked(acks []ack, count, rejected int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lines += int64(count - rejected)
	noneDelivered := rejected > 0 && rejected == count
	if rejected > 0 {
		if d.rejected == nil {
			d.rejected = map[string]int64{}
		}
		reason := otlp.ReasonPartialSuccess
		if noneDelivered {
			reason = otlp.ReasonRejected
		}
		d.rejected[reason] += int64(rejected)
	}
	if d.paths == nil {
		d.paths = map[string]struct{}{}
	}
	for _, k := range acks {
		// Acks of one file come in order; a copy resumed past this file's position (copytruncate)
		// has its offsets already.
		if n := max(k.end-k.file.Acked(), 0); noneDelivered {
			d.rejectedBytes += n
		} else {
			d.bytes += n
		}
		if len(d.paths) < maxCountedFiles {
			d.paths[k.file.Path] = struct{}{}
		}
	}
}

// Receipt returns the delivery receipt of the run so far. Call it from the goroutine that runs
// Run (or after Run returned): it reads the tailers' state. drained says whether the drain
// finished; err is why the agent stopped, if it failed.
func (a *Agent) Receipt(drained bool, err error) receipt.Receipt {
	r := receipt.Receipt{Agent: a.opts.Version, Drained: drained, Containers: []receipt.Container{}}
	if err != nil {
		r.Error = err.Error()
	}
	for _, in := range a.inputs {
		c := receipt.Container{Name: in.cfg.Container}
		in.sent.mu.Lock()
		c.Lines, c.Bytes, c.Files = in.sent.lines, in.sent.bytes, len(in.sent.paths)
		for reason, n := range in.sent.rejected {
			if c.DroppedBy == nil {
				c.DroppedBy = map[string]int64{}
			}
			c.DroppedBy[reason] += n
			c.Dropped += n
		}
		c.DroppedBytes += in.sent.rejectedBytes
		in.sent.mu.Unlock()
		if p := in.sent.pending; p != nil {
			c.PendingBytes, c.PendingFiles = p.bytes, p.files
		} else {
			c.PendingBytes, c.PendingFiles = in.tailer.Unacknowledged()
		}
		files, bytes := in.tailer.Removed()
		c.Removed, c.RemovedBytes = int64(files), int64(bytes)
		drops := in.tailer.Dropped()
		for reason, d := range drops {
			if c.DroppedBy == nil {
				c.DroppedBy = map[string]int64{}
			}
			c.DroppedBy[reason] += int64(d.Count)
			c.Dropped += int64(d.Count)
			c.DroppedBytes += int64(d.Bytes)
		}
		r.Containers = append(r.Containers, c)
	}
	return r
}

// drainEnded records how the drain ended, for the receipt, before the files are closed.
func (a *Agent) drainEnded(err error) {
	a.drained.Store(err == nil)
	for _, in := range a.inputs {
		b, f := in.tailer.Unacknowledged()
		in.sent.pending = &unacked{b, f}
	}
}

// writeReceipt writes the receipt to Options.ReceiptFile, if set. Failing to write it is logged, never fatal: the
// logs were shipped all the same.
func (a *Agent) writeReceipt(err error) {
	if a.opts.ReceiptFile == "" {
		return
	}
	r := a.Receipt(a.drained.Load(), err)
	if werr := receipt.WriteFile(a.opts.ReceiptFile, r, a.opts.ReceiptMaxBytes); werr != nil {
		a.log.Error("writing the delivery receipt", "err", werr)
	}
}
