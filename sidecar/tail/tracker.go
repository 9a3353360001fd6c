package tail

import (
	"crypto/sha256"
	"slices"
	"time"

	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

// tracker remembers the files that are not open and decides, from what a scan and a file's
// first bytes say, what each file found is: one to open from its start, a remembered one to
// resume, a copy to defer, an idle one to leave closed, or a remembered content that is gone.
// It does no I/O: the Tailer stats, opens and reads, and carries out the decisions, so that
// every rule here is tested as a table of situations and decisions (tracker_test.go).
type tracker struct {
	fpSize int           // bytes that make a full fingerprint
	wait   time.Duration // RotateWait: how long a copy of an open file is deferred

	waiting map[fingerprint.ID]*candidate // found, worth opening, not open yet
	seen    map[fingerprint.ID]bool       // inodes the last scan found

	// Remembered contents, by what they are: each kind has its own list and its own rules.
	parked []*File  // closed to make room (MaxFiles); only their Position is kept
	saved  []*saved // positions from the last run that no file matched yet
	cut    []*cut   // contents whose inode was truncated (copytruncate); a copy may turn up

	// start is where files that no remembered position names begin instead of offset 0: the
	// size the first scan saw, with ReadFrom tail, and the size a file had when it was first
	// ignored for its age (IgnoreOlder). Forgotten when the file is opened or gone.
	start map[fingerprint.ID]int64
	// ignored are the files left closed for their age at the last scan, to log each once.
	ignored map[fingerprint.ID]bool
}

// candidate is a file found by the globs that is not open.
type candidate struct {
	id        fingerprint.ID
	path      string
	size      int64
	firstSeen time.Time
	copyOf    string // path of the open file it is a copy of, while deferred
	err       string // last error opening it, to log a persistent one once
}

// saved is a position from the last run.
type saved struct {
	Position
	// moved is set once the file on its inode was found to hold other bytes (truncated while
	// the agent was down): the content can only be in a copy now, on another inode.
	moved bool
}

// cut is the content a file had before it was truncated in place. file is its File, whose
// records may still be in flight (and whose unfinished line its reader still holds, to hand on
// if no copy turns up); resume is where a copy resumes: the start of that line.
type cut struct {
	file   *File
	resume int64
	lost   int64 // bytes known to be unread when it was truncated
}

func newTracker(fpSize int, wait time.Duration) *tracker {
	return &tracker{fpSize: fpSize, wait: wait,
		waiting: map[fingerprint.ID]*candidate{}, seen: map[fingerprint.ID]bool{},
		start: map[fingerprint.ID]int64{}, ignored: map[fingerprint.ID]bool{}}
}

// startAt remembers that the file on id, which has size bytes now, starts at its current end if
// no position names it. The first size remembered stays: what was there then is what is skipped.
func (tr *tracker) startAt(id fingerprint.ID, size int64) {
	if _, ok := tr.start[id]; !ok {
		tr.start[id] = size
	}
}

// tooOld reports whether a file found on id with modTime is to be left closed for its age at
// now: it is older than ignoreOlder, and no remembered position (a parked file, or a checkpoint
// entry of the last run) names its inode, and it is not waiting for a place (MaxFiles) -- a file
// already taken on is not given up because its writer paused or its turn was long in coming.
func (tr *tracker) tooOld(id fingerprint.ID, modTime, now time.Time, ignoreOlder time.Duration) bool {
	if ignoreOlder <= 0 || now.Sub(modTime) <= ignoreOlder || tr.parkedFile(id) != nil || tr.waiting[id] != nil {
		return false
	}
	return !slices.ContainsFunc(tr.saved, func(s *saved) bool { return s.ID == id })
}

// admission is what to do with a file found by a scan that is not open.
type admission uint8

const (
	admitWait admission = iota // open it when there is room
	admitIdle                  // closed to make room at its end and unchanged since: leave it closed
)

// admit decides whether a file found with size and modTime that is not open is worth opening.
// A parked file that has not changed has nothing to read: reopening it only to find that out,
// at every RotateWait, is what made idle files beyond MaxFiles take turns for ever. When
// draining, a parked file's unfinished last line is read too.
func (tr *tracker) admit(id fingerprint.ID, size int64, modTime time.Time, draining bool) admission {
	for _, p := range tr.parked {
		if p.pos.ID != id {
			continue
		}
		if !p.pos.unchanged(size, modTime) || draining && p.pos.Offset < size {
			return admitWait
		}
		return admitIdle
	}
	return admitWait
}

// sighting is what was read of a file being opened.
type sighting struct {
	id     fingerprint.ID
	head   []byte // its first bytes, at most fpSize
	size   int64
	waited time.Duration // since a scan first found it
	copyOf string        // path of an open file whose (full) first bytes it shares
}

// act is what to do with a file being opened.
type act uint8

const (
	actFresh  act = iota // read it from its start
	actResume            // it is a remembered content: read it from offset
	actDefer             // a copy of an open file: wait for the truncation that may follow
)

// verdict is the tracker's decision about a sighting. At most one of parked, saved and cut is
// set with actResume: the remembered content it resumes, already forgotten by the tracker.
type verdict struct {
	act    act
	offset int64
	from   string // the path the content was remembered at
	parked *File
	saved  *saved
	cut    *cut
	// stale are parked files whose inode now holds other bytes (rewritten in place while
	// closed): already forgotten by the tracker, to be settled as a truncation.
	stale []*File
	// shorter is set when a remembered position lies beyond the file's size: the file is read
	// from its start.
	shorter bool
	// skipped is set when a new file starts at offset instead of 0 (ReadFrom tail, IgnoreOlder).
	skipped bool
}

// identify decides what the file of s is. A file that is none of the remembered ones is read
// from its start, or from where startAt said.
func (tr *tracker) identify(s sighting) verdict {
	v := tr.recognise(s)
	if v.act == actDefer {
		return v
	}
	if off, ok := tr.start[s.id]; ok {
		delete(tr.start, s.id)
		// A file now shorter than its remembered start was truncated or replaced: all of it is new.
		if v.act == actFresh && !v.shorter && len(v.stale) == 0 && off <= s.size {
			v.offset, v.skipped = off, true
		}
	}
	return v
}

// recognise decides whether the file of s is a remembered content.
//
// Entries on the same inode are tried first, so that two files starting with the same bytes
// each get their own position. A file on another inode is taken for a remembered one by its
// first bytes alone (a full fingerprint), as a copy (copytruncate, or a rotation by copy while
// the agent was down) would be -- not when the remembered file's inode is still found holding
// that content: then the other file only starts like it (a common header), and resuming it at
// the remembered offset would skip its first lines. Truncated content is the exception: its
// inode lives on, truncated, and its copy is exactly what it waits for.
func (tr *tracker) recognise(s sighting) verdict {
	full := len(s.head) >= tr.fpSize
	if full && s.copyOf != "" && s.waited < tr.wait {
		return verdict{act: actDefer}
	}
	var sum [sha256.Size]byte
	if full {
		sum = sha256.Sum256(s.head)
	}
	is := func(id fingerprint.Identity) bool {
		fp := id.Fingerprint
		// A fingerprint longer than ours (FingerprintSize was larger in the last run) cannot
		// be checked: that file is read again from its start.
		if fp.Len > len(s.head) || fp.Len > tr.fpSize || !fp.Full(tr.fpSize) && id.ID != s.id {
			return false
		}
		if fp.Len == len(s.head) && full {
			return fp.Sum == sum
		}
		return fingerprint.Of(s.head[:fp.Len]).Sum == fp.Sum
	}
	var v verdict
	resume := func(p Position) verdict {
		v.act, v.offset, v.from = actResume, p.Offset, p.Path
		if p.Offset > s.size {
			v.act, v.offset, v.shorter = actFresh, 0, true
		}
		return v
	}

	// Same inode.
	for i, p := range tr.parked {
		if p.pos.ID != s.id {
			continue
		}
		tr.parked = slices.Delete(tr.parked, i, i+1)
		if !is(p.pos.Identity) || p.pos.Offset > s.size {
			v.stale = append(v.stale, p)
			break
		}
		v.parked = p
		return resume(p.pos)
	}
	for i, sv := range tr.saved {
		if sv.ID != s.id {
			continue
		}
		if !is(sv.Identity) {
			sv.moved = true
			continue
		}
		tr.saved = slices.Delete(tr.saved, i, i+1)
		v.saved = sv
		return resume(sv.Position)
	}
	for i, c := range tr.cut {
		if c.file.pos.ID == s.id && is(c.file.pos.Identity) {
			tr.cut = slices.Delete(tr.cut, i, i+1)
			v.cut = c
			return resume(Position{Path: c.file.Path, Offset: c.resume})
		}
	}

	// Another inode: a copy or a move, told by a full fingerprint only.
	if !full {
		return v
	}
	for i, c := range tr.cut {
		if c.file.pos.ID != s.id && is(c.file.pos.Identity) {
			tr.cut = slices.Delete(tr.cut, i, i+1)
			v.cut = c
			return resume(Position{Path: c.file.Path, Offset: c.resume})
		}
	}
	for i, sv := range tr.saved {
		if sv.ID == s.id || tr.seen[sv.ID] && !sv.moved || !is(sv.Identity) {
			continue
		}
		tr.saved = slices.Delete(tr.saved, i, i+1)
		v.saved = sv
		return resume(sv.Position)
	}
	for i, p := range tr.parked {
		if p.pos.ID == s.id || tr.seen[p.pos.ID] || !is(p.pos.Identity) {
			continue
		}
		tr.parked = slices.Delete(tr.parked, i, i+1)
		v.parked = p
		return resume(p.pos)
	}
	return v
}

// unreadWhenGone returns the bytes lost with a file that a complete scan no longer finds and
// that was not open: c is its candidate, if it was waiting, and p its position, if it was
// parked. A parked file is known to hold bytes past its offset (its unfinished last line, and
// whatever was written since it was closed); a waiting copy of an open file held nothing that
// was not read through the original; any other waiting file was not read at all.
func unreadWhenGone(c *candidate, p *Position) int64 {
	var size int64
	if c != nil {
		size = c.size
	}
	if p != nil {
		return max(max(size, p.Size)-p.Offset, 0)
	}
	if c == nil || c.copyOf != "" {
		return 0
	}
	return c.size
}

// growth classifies a check of an open file read to offset, whose size was seen at the last
// check and is size now. A file shorter than what was read was truncated; one whose size
// changed may have been truncated and written past its old size, which only its first bytes
// tell (needHead). One whose size did not change costs nothing more than the stat.
func growth(offset, seen, size int64) (truncated, needHead bool) {
	if size < offset {
		return true, false
	}
	return false, size != seen
}

// parkedFile returns the parked File on inode id, or nil.
func (tr *tracker) parkedFile(id fingerprint.ID) *File {
	for _, p := range tr.parked {
		if p.pos.ID == id {
			return p
		}
	}
	return nil
}

// mayMatchWaiting reports whether a file found but not open yet may still be opened, and so
// match a remembered position. Files that could not be opened (no permission) are retried, but
// must not keep positions and truncated content alive for ever.
func (tr *tracker) mayMatchWaiting() bool {
	for _, c := range tr.waiting {
		if c.err == "" {
			return true
		}
	}
	return false
}
