// Package receipt is the delivery receipt that sidelog-agent writes to its container's
// termination message when it exits, so that the kubelet puts it in the pod's status: how much of
// each app container's logs was delivered (acknowledged upstream), how much was still pending,
// what was dropped and why, and whether the drain finished. It is read back with kubectl or
// `sidelog receipt`.
//
// The kubelet keeps at most MaxBytes of a termination message, so Encode keeps every receipt
// within it, degrading deterministically when there are many containers (see Encode). Standard
// library only: the agent imports it.
package receipt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"unicode/utf8"
)

// SchemaVersion is the value of Receipt.Schema this package writes.
const SchemaVersion = 1

// MaxBytes is the kubelet's limit on one container's termination message: it reads the last
// MaxBytes of the file, which of a longer receipt would be JSON that does not parse.
const MaxBytes = 4096

// PodMaxBytes is the kubelet's limit on the termination messages of a pod's containers together:
// its status manager cuts each container's to PodMaxBytes divided by the number of containers and
// init containers of the pod (see Limit).
const PodMaxBytes = 12 << 10

// Limit returns the longest termination message the kubelet keeps whole for one container of a
// pod of n containers and init containers: MaxBytes up to 3, less beyond (1024 bytes for 12).
func Limit(n int) int {
	if n <= 0 {
		return MaxBytes
	}
	return min(MaxBytes, PodMaxBytes/n)
}

// Limits on free-text fields, so that the fixed part of a receipt always fits.
const (
	maxErrorBytes = 512
	maxAgentBytes = 64
)

// Degraded values: what Encode left out to stay within MaxBytes.
const (
	// DegradedReasons: the per-reason detail (DroppedBy) was left out; Dropped and DroppedBytes
	// still hold the totals.
	DegradedReasons = "reasons"
	// DegradedContainers: besides the per-reason detail, the containers after the first
	// len(Containers) were summed into Others.
	DegradedContainers = "containers"
	// DegradedAll: only Schema and Drained are left (a limit of a few hundred bytes, in a pod of
	// very many containers).
	DegradedAll = "all"
)

// Receipt is what the agent delivered in its run, as written to the termination message.
// Counts are of this run of the agent: a restarted agent counts from its restart (what an earlier
// run delivered is in that run's receipt, the kubelet's lastState).
type Receipt struct {
	// Schema is the receipt format, SchemaVersion.
	Schema int `json:"v"`
	// Agent is the agent's version.
	Agent string `json:"agent,omitempty"`
	// Drained is true when the agent drained: after the stop signal it read every file to its
	// end and every record it read was acknowledged before the drain deadline. False when the
	// deadline passed, when the agent failed, and in the receipt written as the drain starts
	// (what the status shows if the agent was killed before it finished).
	Drained bool `json:"drained"`
	// Error is why the agent stopped with an error, cut to 512 bytes; empty when it did not.
	Error string `json:"error,omitempty"`
	// Degraded says what was left out to stay within MaxBytes: "", DegradedReasons or
	// DegradedContainers.
	Degraded string `json:"degraded,omitempty"`
	// Containers are the app containers whose files the agent tails, in the order of its
	// configuration (none listed when Degraded is DegradedAll).
	Containers []Container `json:"containers,omitempty"`
	// Others sums the containers left out of Containers (Degraded is DegradedContainers).
	Others *Others `json:"others,omitempty"`
}

// Container is one app container's totals over all of its files.
type Container struct {
	// Name is the app container's name.
	Name string `json:"name"`
	Counts
}

// Others is the sum of the containers a receipt had no room to list.
type Others struct {
	// Containers is how many containers are summed here.
	Containers int `json:"containers"`
	Counts
}

// Counts are the delivery totals of one container or of several.
type Counts struct {
	// Lines is the number of records acknowledged upstream: lines, a joined multiline record
	// counting as one.
	Lines int64 `json:"lines"`
	// Bytes is the number of file bytes whose records were acknowledged (newlines included).
	Bytes int64 `json:"bytes"`
	// Files is the number of files (distinct paths) records were acknowledged from, counted up to
	// 65536.
	Files int `json:"files"`
	// PendingBytes is the number of bytes of the files read so far that were not acknowledged:
	// read and not acknowledged, or not read yet. Zero after a finished drain. A restarted agent
	// reads them again from its checkpoint.
	PendingBytes int64 `json:"pendingBytes"`
	// PendingFiles is the number of files PendingBytes are in.
	PendingFiles int `json:"pendingFiles,omitempty"`
	// Dropped is the number of unavoidable losses (lines or records cut to maxLineBytes: their
	// rest; files deleted or bytes truncated before they were read), as sidelog_dropped_total.
	Dropped int64 `json:"dropped"`
	// DroppedBytes is the number of bytes lost, as sidelog_dropped_bytes_total.
	DroppedBytes int64 `json:"droppedBytes,omitempty"`
	// DroppedBy is Dropped by reason (line_too_long, record_too_long, deleted_before_read,
	// truncated_before_read), reasons with none left out.
	DroppedBy map[string]int64 `json:"droppedBy,omitempty"`
	// Removed is the number of rotated files the agent removed once every byte of them was
	// acknowledged (sidelog.io/cleanup), as sidelog_files_removed_total; RemovedBytes their size.
	Removed      int64 `json:"removed,omitempty"`
	RemovedBytes int64 `json:"removedBytes,omitempty"`
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Lines += o.Lines
	c.Bytes += o.Bytes
	c.Files += o.Files
	c.PendingBytes += o.PendingBytes
	c.PendingFiles += o.PendingFiles
	c.Dropped += o.Dropped
	c.DroppedBytes += o.DroppedBytes
	c.Removed += o.Removed
	c.RemovedBytes += o.RemovedBytes
	for k, v := range o.DroppedBy {
		if c.DroppedBy == nil {
			c.DroppedBy = map[string]int64{}
		}
		c.DroppedBy[k] += v
	}
}

// Encode returns r as compact JSON of at most MaxBytes (see EncodeWithin).
func Encode(r Receipt) ([]byte, error) { return EncodeWithin(r, MaxBytes) }

// EncodeWithin returns r as compact JSON of at most limit bytes (MaxBytes if limit is not
// positive or more). When the whole receipt is longer (many containers, or a small limit), it
// leaves out, in this order and only as much as it must:
//
//  1. the per-reason detail of every container (Degraded "reasons"; the totals stay);
//  2. the last containers, summed into Others (Degraded "containers"), keeping as many of the
//     first ones as fit, down to none;
//  3. Error and Agent;
//  4. Others (Degraded "all": only Schema and Drained are left).
//
// Error is cut to 512 bytes or a quarter of the limit, Agent to 64 bytes, first. The same receipt
// and limit always give the same bytes. It fails only for a limit too small for step 4 (under 40
// bytes: a pod of more than 307 containers).
func EncodeWithin(r Receipt, limit int) ([]byte, error) {
	if limit <= 0 || limit > MaxBytes {
		limit = MaxBytes
	}
	r.Schema = SchemaVersion
	// An error takes at most a quarter of a small limit: the counts matter more.
	r.Error = cut(r.Error, min(maxErrorBytes, limit/4))
	r.Agent = cut(r.Agent, maxAgentBytes)
	fits := func() ([]byte, bool) {
		b, err := json.Marshal(r)
		return b, err == nil && len(b) <= limit // Receipt has no type Marshal can fail on
	}
	if b, ok := fits(); ok {
		return b, nil
	}

	all := make([]Container, len(r.Containers))
	for i, c := range r.Containers {
		c.DroppedBy = nil
		all[i] = c
	}
	r.Containers, r.Degraded = all, DegradedReasons
	if b, ok := fits(); ok {
		return b, nil
	}

	// A listed container takes at least minContainerBytes, which bounds where to start.
	r.Degraded = DegradedContainers
	suffix := make([]Counts, len(all)+1) // suffix[i] sums all[i:]
	for i := len(all) - 1; i >= 0; i-- {
		suffix[i] = suffix[i+1]
		suffix[i].Add(all[i].Counts)
	}
	for keep := min(len(all)-1, limit/minContainerBytes); keep >= 0; keep-- {
		r.Containers, r.Others = all[:keep], &Others{Containers: len(all) - keep, Counts: suffix[keep]}
		if b, ok := fits(); ok {
			return b, nil
		}
	}

	r.Error, r.Agent = "", ""
	if b, ok := fits(); ok {
		return b, nil
	}
	r.Containers, r.Others, r.Degraded = nil, nil, DegradedAll
	if b, ok := fits(); ok {
		return b, nil
	}
	return nil, fmt.Errorf("receipt: no room in %d bytes", limit)
}

// minContainerBytes is the length of the shortest Container in JSON, with its comma.
var minContainerBytes = func() int {
	b, _ := json.Marshal(Container{})
	return len(b) + 1
}()

// cut returns s cut to at most n bytes, at a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// WriteFile writes r, encoded within limit bytes (see EncodeWithin), to path: the container's
// termination message file (terminationMessagePath), which the kubelet creates before the
// container starts.
func WriteFile(path string, r Receipt, limit int) error {
	b, err := EncodeWithin(r, limit)
	if err != nil {
		return err
	}
	// No O_CREATE needed in a pod, but harmless, and what a local run wants.
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing the delivery receipt to %s: %w", path, err)
	}
	return nil
}

// Parse decodes a receipt from a termination message. ErrNotReceipt means the message is
// something else (with terminationMessagePolicy FallbackToLogsOnError, the end of the agent's log
// when it failed before it could write one).
func Parse(msg string) (Receipt, error) {
	var r Receipt
	if err := json.Unmarshal([]byte(msg), &r); err != nil || r.Schema == 0 {
		return Receipt{}, ErrNotReceipt
	}
	if r.Schema > SchemaVersion {
		return r, fmt.Errorf("receipt version %d is newer than this program's %d", r.Schema, SchemaVersion)
	}
	return r, nil
}

// ErrNotReceipt is returned by Parse for a message that is not a receipt.
var ErrNotReceipt = errors.New("the termination message is not a delivery receipt")
