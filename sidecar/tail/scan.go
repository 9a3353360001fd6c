package tail

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

// check looks at the open files' sizes: growth, and truncation (size below what was read, or
// first bytes changed). all checks every file; otherwise only those that were read last pass.
func (t *Tailer) check(now time.Time, all bool) {
	for i := 0; i < len(t.open); i++ {
		f := t.open[i]
		if !all && !f.active {
			continue
		}
		fi, err := f.rd.fd.Stat()
		if err != nil {
			t.readError(f, fmt.Errorf("checking %s: %w", f.Path, err))
			continue
		}
		size := fi.Size()
		truncated, needHead := growth(f.pos.Offset, f.pos.Size, size)
		if needHead {
			same, err := f.rd.sameHead(t.headBuf)
			if err != nil {
				t.readError(f, fmt.Errorf("checking %s: %w", f.Path, err))
				continue
			}
			truncated = !same
		}
		if truncated {
			f = t.truncated(f, now, size)
		}
		if size > f.pos.Size {
			f.lastData = now
		}
		f.pos.Size, f.pos.ModTime = size, fi.ModTime()
		if !f.pos.Fingerprint.Full(t.opts.FingerprintSize) && int64(f.pos.Fingerprint.Len) < size {
			t.refreshFingerprint(f)
		}
		f.behind.Store(f.pos.Size - f.pos.Offset)
	}
}

// refreshFingerprint lengthens a short fingerprint as its file grows. Reads stop at the size the
// last check saw, so a short fingerprint always covers what was read: a position saved with it
// never skips bytes it did not identify.
func (t *Tailer) refreshFingerprint(f *File) {
	head, fp, err := readHead(f.rd.fd, t.headBuf)
	if err != nil {
		t.readError(f, fmt.Errorf("fingerprinting %s: %w", f.Path, err))
		return
	}
	f.rd.head = head
	t.mu.Lock()
	f.pos.Fingerprint = fp
	t.mu.Unlock()
	if fp.Full(t.opts.FingerprintSize) {
		t.byFP[fp.Sum] = f
	}
}

// truncated handles a file whose content was truncated (copytruncate): the records of the old
// content are finished, and the same descriptor continues as a new File from offset 0.
func (t *Tailer) truncated(f *File, now time.Time, size int64) *File {
	lost := max(f.pos.Size-f.pos.Offset, 0)
	t.log.Warn("file truncated (copytruncate?): reading it again from the start",
		"path", f.Path, "read", f.pos.Offset, "size", size)
	t.m.rotations("truncated").Inc()

	// A copy of the old content that a glob matches resumes where this one was left, at the
	// start of its unfinished line, which the copy then holds whole. Only a full fingerprint can
	// recognise a copy (it has another inode).
	remember := f.pos.Fingerprint.Full(t.opts.FingerprintSize)
	if remember {
		f.flushRecord()
	} else {
		t.flush(f)
		t.retired = append(t.retired, f)
		if lost > 0 {
			t.drop(reasonTruncated, lost, "file truncated before it was read to the end", "path", f.Path)
		}
	}

	fd := f.rd.fd
	head, fp, err := readHead(fd, t.headBuf)
	if err != nil {
		t.readError(f, fmt.Errorf("fingerprinting %s: %w", f.Path, err))
	}
	g := t.newFile(f.Path, 0, now)
	g.rd = newReader(fd, head, t.opts.MaxLineBytes, t.rule)
	g.pos.Identity = fingerprint.Identity{ID: f.pos.ID, Fingerprint: fp}
	// The descriptor is g's now; f's reader keeps only its unfinished line, for settle.
	f.rd.fd = nil
	if !remember {
		f.rd = nil
	}
	t.mu.Lock()
	t.open[slices.Index(t.open, f)] = g
	t.mu.Unlock()
	if remember {
		t.tr.cut = append(t.tr.cut, &cut{file: f, resume: f.boundary(), lost: lost})
	}
	if t.byFP[f.pos.Fingerprint.Sum] == f {
		delete(t.byFP, f.pos.Fingerprint.Sum)
	}
	if fp.Full(t.opts.FingerprintSize) {
		t.byFP[fp.Sum] = g
	}
	t.byID[g.pos.ID] = g
	t.gaugeSwap(f, g)
	return g
}

// scan expands the globs, notices files that are gone, and opens new ones.
func (t *Tailer) scan(now time.Time) {
	first := !t.scanned
	t.lastScan, t.scanned = now, true
	paths, err := t.globs.Files()
	complete := err == nil
	if err != nil && err.Error() != t.lastErr {
		t.log.Warn("finding files", "err", err)
	}
	t.lastErr = ""
	if err != nil {
		t.lastErr = err.Error()
	}
	tr := t.tr
	clear(tr.seen)
	clear(t.live)
	var cands []*candidate
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			// Gone between listing and stat, or a dangling link: the next scan decides.
			continue
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		id, ok := fingerprint.IDOf(fi)
		if ok && t.cleanup != nil && !t.cleanup.Match(p) && fi.ModTime().After(t.live[id]) {
			t.live[id] = fi.ModTime()
		}
		if !ok || tr.seen[id] {
			continue // the same file through a second path (a link)
		}
		tr.seen[id] = true
		if f := t.byID[id]; f != nil {
			f.goneAt = time.Time{}
			continue
		}
		if first && t.opts.ReadFrom == config.ReadFromTail {
			tr.startAt(id, fi.Size())
		}
		if tr.tooOld(id, fi.ModTime(), now, t.opts.IgnoreOlder) {
			tr.startAt(id, fi.Size())
			if !tr.ignored[id] {
				tr.ignored[id] = true
				t.log.Info("file not modified within ignoreOlder: not read until it is written to", "path", p,
					"modified", fi.ModTime().UTC().Format(time.RFC3339), "ignoreOlder", t.opts.IgnoreOlder)
			}
			delete(tr.waiting, id)
			continue
		}
		delete(tr.ignored, id)
		if tr.admit(id, fi.Size(), fi.ModTime(), t.drained) == admitIdle {
			delete(tr.waiting, id)
			continue
		}
		c := tr.waiting[id]
		if c == nil {
			c = &candidate{id: id, firstSeen: now}
			tr.waiting[id] = c
		}
		c.path, c.size = p, fi.Size()
		cands = append(cands, c)
	}
	if complete {
		t.forgetMissing(now)
	}
	// Files on an inode a saved position names go first: when the agent was down during a
	// copytruncate, the truncated original must be seen to hold other bytes before its copy is
	// examined, or the copy would be taken for another file with the same first bytes. Then
	// longest waiting first, so that files closed to make room queue behind the others.
	remembered := func(c *candidate) bool {
		return slices.ContainsFunc(tr.saved, func(s *saved) bool { return s.ID == c.id })
	}
	slices.SortStableFunc(cands, func(a, b *candidate) int {
		if ra, rb := remembered(a), remembered(b); ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return a.firstSeen.Compare(b.firstSeen)
	})
	for _, c := range cands {
		if len(t.open) >= t.opts.MaxFiles && !t.makeRoom(now) {
			break
		}
		t.openCandidate(c, now)
	}
	if complete && !tr.mayMatchWaiting() {
		t.expire()
	}
	t.m.waiting.Set(int64(len(tr.waiting)))
}

// forgetMissing handles what the last complete scan did not find: open files start their
// RotateWait, and files that were not open are gone, with what they held unread.
func (t *Tailer) forgetMissing(now time.Time) {
	tr := t.tr
	for _, f := range t.open {
		if !tr.seen[f.pos.ID] && f.goneAt.IsZero() {
			f.goneAt = now
			t.m.rotations("moved").Inc()
			t.log.Info("file renamed away or deleted: reading it to its end", "path", f.Path)
		}
	}
	for _, p := range slices.Clone(tr.parked) {
		if tr.seen[p.pos.ID] {
			continue
		}
		c := tr.waiting[p.pos.ID]
		delete(tr.waiting, p.pos.ID)
		if n := unreadWhenGone(c, &p.pos); n > 0 {
			t.drop(reasonDeleted, n, "file closed to make room (maxFiles) deleted or renamed away before it was read to its end",
				"path", p.Path)
		}
		t.setParked(slices.DeleteFunc(slices.Clone(tr.parked), func(q *File) bool { return q == p }))
		t.retired = append(t.retired, p)
	}
	for id := range tr.start {
		if !tr.seen[id] {
			delete(tr.start, id)
		}
	}
	for id := range tr.ignored {
		if !tr.seen[id] {
			delete(tr.ignored, id)
		}
	}
	for id, c := range tr.waiting {
		if tr.seen[id] {
			continue
		}
		delete(tr.waiting, id)
		if n := unreadWhenGone(c, nil); n > 0 {
			t.drop(reasonDeleted, n, "file deleted or renamed away before it could be read", "path", c.path)
		}
	}
}

// expire drops positions from the last run and truncated contents that no file matched once
// every file found was examined: their files are gone.
func (t *Tailer) expire() {
	for _, c := range t.tr.cut {
		t.settle(c)
	}
	t.setCut(nil)
	t.mu.Lock()
	t.tr.saved = nil
	t.mu.Unlock()
}

// settle gives up on a copy of truncated content turning up: the unfinished line the old
// content ended with is handed on, and the bytes known to be unread are counted as lost.
func (t *Tailer) settle(c *cut) {
	t.flush(c.file)
	c.file.rd = nil
	t.retired = append(t.retired, c.file)
	if c.lost > 0 {
		t.drop(reasonTruncated, c.lost, "file truncated before it was read to the end, and no glob matches its copy", "path", c.file.Path)
	}
}

// rewritten handles a parked file whose inode was found holding other bytes: it was truncated
// (and written again) while closed, so it is settled as a truncation, and the file found is read
// as a new one.
func (t *Tailer) rewritten(p *File) {
	t.log.Warn("file closed to make room was truncated or rewritten: reading it again from the start",
		"path", p.Path, "read", p.pos.Offset)
	t.m.rotations("truncated").Inc()
	c := &cut{file: p, resume: p.pos.Offset, lost: p.pos.unread()}
	if p.pos.Fingerprint.Full(t.opts.FingerprintSize) {
		t.tr.cut = append(t.tr.cut, c) // its copy may turn up
		return
	}
	t.settle(c)
}

func (t *Tailer) setParked(p []*File) {
	t.mu.Lock()
	t.tr.parked = p
	t.mu.Unlock()
}

func (t *Tailer) setCut(c []*cut) { t.tr.cut = c }

// openCandidate opens a file found by the globs and reads it from where the tracker says.
func (t *Tailer) openCandidate(c *candidate, now time.Time) {
	fd, err := os.Open(c.path)
	if err != nil {
		// A file deleted since the scan stays waiting: the next scan counts it if it is gone.
		if !errors.Is(err, os.ErrNotExist) && err.Error() != c.err {
			t.log.Warn("opening file", "path", c.path, "err", err)
		}
		c.err = err.Error()
		return
	}
	fi, err := fd.Stat()
	var id fingerprint.ID
	if err == nil {
		id, _ = fingerprint.IDOf(fi)
	}
	if err != nil || id != c.id {
		fd.Close() // the path holds another file now; the next scan sorts it out
		return
	}
	head, fp, err := readHead(fd, t.headBuf)
	if err != nil {
		fd.Close()
		if err.Error() != c.err {
			t.log.Warn("opening file", "path", c.path, "err", err)
		}
		c.err = err.Error()
		return
	}
	full := fp.Full(t.opts.FingerprintSize)
	s := sighting{id: id, head: head, size: fi.Size(), waited: now.Sub(c.firstSeen)}
	if o := t.byFP[fp.Sum]; full && o != nil {
		s.copyOf = o.Path
	}
	t.mu.Lock() // identify forgets what it matched, which Positions reads
	v := t.tr.identify(s)
	t.mu.Unlock()
	for _, p := range v.stale {
		t.rewritten(p)
	}
	if v.act == actDefer {
		// Most likely copytruncate's copy made before the truncation: after it, the copy
		// resumes where the original was. Bounded by RotateWait, because two different files
		// may start with the same bytes.
		fd.Close()
		if c.copyOf == "" {
			t.log.Info("file starts like one being read: waiting for a truncation", "path", c.path, "original", s.copyOf)
		}
		c.copyOf = s.copyOf
		return
	}
	if v.shorter {
		t.log.Warn("file is shorter than the position remembered for it: reading it from the start",
			"path", c.path, "remembered_as", v.from, "size", fi.Size())
		if v.cut != nil {
			t.settle(v.cut)
		}
	}
	var f *File
	switch {
	case v.act == actResume && v.parked != nil:
		f = v.parked
		f.goneAt = time.Time{}
		f.lastData = now
		// Its turn again: a file closed to make room is routine, not news.
		t.log.Debug("reopening file", "path", c.path, "offset", f.pos.Offset)
	case v.act == actResume:
		f = t.newFile(c.path, v.offset, now)
		// A copy's head is its original's; a checkpoint's file keeps what it said.
		f.skipped = v.saved != nil && v.saved.skipped || v.cut != nil && v.cut.file.skipped
		if v.cut != nil {
			f.acked.Store(min(v.cut.file.acked.Load(), v.offset))
			v.cut.file.next.Store(f)
			if v.cut.file.rd != nil {
				v.cut.file.rd.split.Reset() // the copy holds the unfinished line whole
			}
		}
		t.log.Info("resuming file", "path", c.path, "offset", v.offset, "remembered_as", v.from)
	default:
		f = t.newFile(c.path, v.offset, now)
		f.skipped = v.skipped
		if v.skipped {
			t.log.Info("new file without a checkpoint: reading from its end (readFrom tail or ignoreOlder)", "path", c.path, "offset", v.offset)
		}
	}
	f.rd = newReader(fd, head, t.opts.MaxLineBytes, t.rule)
	// Read in this pass up to the size seen before the fingerprint was taken, so that a short
	// fingerprint covers everything read.
	f.pos.Size, f.pos.ModTime = fi.Size(), fi.ModTime()
	f.behind.Store(f.pos.Size - f.pos.Offset)
	delete(t.tr.waiting, c.id)
	t.mu.Lock()
	f.pos.Identity = fingerprint.Identity{ID: id, Fingerprint: fp}
	t.open = append(t.open, f)
	t.mu.Unlock()
	t.byID[id] = f
	if full {
		t.byFP[fp.Sum] = f
	}
	t.gaugeAdd(f)
	t.m.open.Add(1)
}

// makeRoom closes the open file that has been idle longest (at its end, no growth for
// RotateWait) so that a waiting file can be opened. It reports whether a place was freed. A file
// without an unfinished line goes first: a parked file's unfinished line is lost if the file
// disappears before its next turn.
func (t *Tailer) makeRoom(now time.Time) bool {
	var idle *File
	for _, f := range t.open {
		if f.pos.Offset < f.pos.Size || !f.goneAt.IsZero() || now.Sub(f.lastData) < t.opts.RotateWait {
			continue
		}
		if idle == nil || cmp.Or(cmp.Compare(f.rd.split.Pending(), idle.rd.split.Pending()), f.lastData.Compare(idle.lastData)) < 0 {
			idle = f
		}
	}
	if idle == nil {
		return false
	}
	idle.flushRecord()
	t.park(idle)
	return true
}

// park closes f and keeps only its position, at the end of its last complete line: its
// unfinished line is read again from the file when its turn comes, so that none of the many
// parked files pins a line buffer, a multiline record or a descriptor.
func (t *Tailer) park(f *File) {
	boundary := f.boundary()
	if err := t.closeFile(f); err != nil {
		t.log.Warn("closing file to make room", "path", f.Path, "err", err)
	}
	f.pos.Offset = boundary
	f.rd = nil
	f.active = false
	t.mu.Lock()
	t.tr.parked = append(t.tr.parked, f)
	t.mu.Unlock()
}

// retireGone closes files that no glob finds any more once they are read to the end and have
// been quiet for RotateWait.
func (t *Tailer) retireGone(now time.Time) {
	t.retired = slices.DeleteFunc(t.retired, func(f *File) bool { return f.acked.Load() >= f.pos.Offset })
	for i := 0; i < len(t.open); i++ {
		f := t.open[i]
		if f.goneAt.IsZero() || f.pos.Offset < f.pos.Size || now.Sub(f.goneAt) < t.opts.RotateWait || now.Sub(f.lastData) < t.opts.RotateWait {
			continue
		}
		t.flush(f)
		if err := t.closeFile(f); err != nil {
			t.log.Warn("closing finished file", "path", f.Path, "err", err)
		}
		f.rd = nil
		t.retired = append(t.retired, f)
		t.log.Info("file finished", "path", f.Path, "read", f.pos.Offset)
		i--
	}
}

func (t *Tailer) newFile(path string, offset int64, now time.Time) *File {
	f := &File{Path: path, t: t, lastData: now}
	f.pos = Position{Path: path, Offset: offset, Size: offset}
	f.acked.Store(offset)
	return f
}

// closeFile closes f's descriptor and forgets it as open.
func (t *Tailer) closeFile(f *File) error {
	var err error
	if f.rd != nil {
		err = f.rd.closeFd()
	}
	t.mu.Lock()
	if i := slices.Index(t.open, f); i >= 0 {
		t.open = slices.Delete(t.open, i, i+1)
	}
	t.mu.Unlock()
	if t.byID[f.pos.ID] == f {
		delete(t.byID, f.pos.ID)
	}
	if t.byFP[f.pos.Fingerprint.Sum] == f {
		delete(t.byFP, f.pos.Fingerprint.Sum)
	}
	t.gaugeRemove(f)
	t.m.open.Add(-1)
	if err != nil {
		return fmt.Errorf("closing %s: %w", f.Path, err)
	}
	return nil
}
