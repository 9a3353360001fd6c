package tail

import (
	"time"

	"github.com/sidelog/sidelog/sidecar/checkpoint"
	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

// Position is all that is kept of a file that is not open: who it is, where reading resumes, and
// what the file looked like when it was closed. It holds no bytes of the file: a file closed to
// make room is read again from Offset, the end of its last complete record, so that its
// unfinished last line is read whole when it is reopened instead of being held meanwhile.
type Position struct {
	Path string `json:"path"`
	fingerprint.Identity
	// Offset is where reading resumes: the end of the last complete record handed on.
	Offset int64 `json:"offset"`
	// Acked is the end of the last record acknowledged upstream, at most Offset.
	Acked int64 `json:"acked"`
	// Size and ModTime are the file's when it was closed: a file found again with the same ones
	// has nothing new, and is not reopened.
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	// skipped: a checkpoint said the file was read from past its first byte (File.skipped).
	skipped bool
}

// Entry returns the checkpoint entry of p: reading resumes at the acknowledged offset, for what
// was read but not acknowledged may not have arrived.
func (p Position) Entry(container string) checkpoint.Entry {
	return checkpoint.Entry{Container: container, Path: p.Path, Identity: p.Identity, Offset: p.Acked, Skipped: p.skipped}
}

// positionOf returns the position a checkpoint entry saved: everything before its offset was
// acknowledged.
func positionOf(e checkpoint.Entry) Position {
	return Position{Path: e.Path, Identity: e.Identity, Offset: e.Offset, Acked: e.Offset, skipped: e.Skipped}
}

// unread returns the bytes of the file known to exist past Offset when it was last seen.
func (p Position) unread() int64 { return max(p.Size-p.Offset, 0) }

// unchanged reports whether a file found with size and modTime is as it was when it was closed
// at its end: nothing to read, no reason to reopen it.
func (p Position) unchanged(size int64, modTime time.Time) bool {
	return size == p.Size && modTime.Equal(p.ModTime)
}
