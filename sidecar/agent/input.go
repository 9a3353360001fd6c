package agent

import (
	"context"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/metrics"
	"github.com/sidelog/sidelog/sidecar/parse"
	"github.com/sidelog/sidelog/sidecar/tail"
)

// stream is one app container's files and the batch being filled with their records. It is the
// tail.Sink of its tailer, so everything here runs on the tail loop's goroutine.
type stream struct {
	agent     *Agent
	cfg       config.Input
	tag       string
	tailer    *tail.Tailer
	batchSize int

	// tr is the json parser's scratch, shared by the encoders of every file of the input: it grows
	// with the widest line (about 12 bytes per byte of line), which per file would add up to
	// hundreds of MiB over maxFiles files; it shrinks again after wide lines (parse.Transcoder).
	tr parse.Transcoder
	// timeFormat reads the event time of parsed lines from the member cfg.TimeKey (tr.TimeKey);
	// nil without a time key. timeErrors counts parsed lines without a usable time.
	timeFormat *parse.TimeFormat
	timeErrors *metrics.Counter

	// ctx bounds a blocking Send (the run context, then the drain deadline); now stamps records.
	ctx context.Context
	now time.Time

	buf     []byte
	count   int
	started time.Time
	// files are the files with records in the current batch; each one's fileState.end is the
	// offset its last record in the batch ends at.
	files []*tail.File
	// resource is the OTLP Resource of the input's batches, built for Agent.podGen resourceGen.
	resource    []byte
	resourceGen int
	// stopped is set when a Send failed at the drain deadline: from then on records are not
	// encoded, for nothing can be sent, and none of them is acknowledged, so the next start reads
	// them again.
	stopped bool
	// sent counts what was acknowledged, for the receipt.
	sent delivered
}

// fileState is the input's per-file state, kept in tail.File.Meta so that the per-record path
// needs no map lookup. It is small: the file's pre-encoded fields, no scratch.
type fileState struct {
	enc     encoder
	gen     int // the Agent.podGen enc was built for
	end     int64
	inBatch bool
}

// Record encodes one record into the current batch and sends the batch when it is full.
func (in *stream) Record(f *tail.File, rec []byte, end int64) {
	if in.stopped {
		return
	}
	st, _ := f.Meta.(*fileState)
	if st == nil {
		st = &fileState{}
		f.Meta = st
	}
	if st.enc == nil || st.gen != in.agent.podGen {
		st.enc, st.gen = in.agent.newEncoder(in.cfg.Container, f.Path, in.cfg.Parser, &in.tr), in.agent.podGen
		if in.timeFormat != nil {
			st.enc.SetEventTime(in.timeFormat, in.timeErrors.Inc)
		}
	}
	if in.count == 0 {
		in.started = in.now
		if in.buf == nil {
			in.buf = in.agent.buffer(in.batchSize)
		}
	}
	var parsed bool
	in.buf, parsed = st.enc.Append(in.buf, in.now, rec)
	if !parsed && in.cfg.Parser == config.ParserJSON {
		in.agent.parseErrors.Inc()
	}
	in.count++
	st.end = end
	if !st.inBatch {
		st.inBatch = true
		in.files = append(in.files, f)
	}
	if len(in.buf) >= in.batchSize {
		in.flush()
	}
}

// flush hands the current batch to the upstream client. It blocks while the in-flight limit is
// reached: that is what stops reading when the aggregator is slow.
func (in *stream) flush() {
	if in.count == 0 {
		return
	}
	acks := make([]ack, len(in.files))
	for i, f := range in.files {
		st := f.Meta.(*fileState)
		acks[i] = ack{f, st.end}
		st.inBatch = false
	}
	a := in.agent
	entries, count := in.buf, in.count
	acked := func(rejected int) {
		// Records the upstream refused for good (OTLP) are done with, so their offsets are
		// checkpointed, but they were dropped, not delivered: the receipt says so.
		in.sent.acked(acks, count, rejected)
		for _, k := range acks {
			k.file.Ack(k.end)
		}
		a.recycle(entries)
		a.acked()
	}
	in.buf, in.count, in.files = nil, 0, in.files[:0]
	if err := a.send(in, entries, count, acked); err != nil {
		// Only the drain deadline ends a Send: the batch's positions stay unacknowledged, so the
		// next start reads these records again.
		in.stopped = true
		a.log.Error("drain deadline passed: stopped sending", "container", in.cfg.Container, "err", err)
	}
	// Records read after a long wait are stamped with the time they were read.
	in.now = time.Now()
}

type ack struct {
	file *tail.File
	end  int64
}

// buffer returns an empty batch buffer, reusing an acknowledged one when there is one.
func (a *Agent) buffer(size int) []byte {
	select {
	case b := <-a.free:
		return b[:0]
	default:
		// Room for the record that crosses the size, so that most batches never grow.
		return make([]byte, 0, size+size/8)
	}
}

func (a *Agent) recycle(b []byte) {
	select {
	case a.free <- b:
	default:
	}
}
