package tail

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

// Removing rotated files once delivered (Options.Cleanup).
//
// An app that rotates its log without removing the old files fills a serverless pod's ephemeral
// storage. With Options.Cleanup, the Tailer removes a file that a cleanup glob matches once it
// is sure that the file is done with, by the writer and by the upstream alike:
//
//   - the tail globs match it too (and no exclude glob): only a file the Tailer reads can be
//     known to be delivered;
//   - the Tailer holds its content, by inode and first bytes: an open file, or one closed to make
//     room; never a file it has not opened (waiting for a place, a copy waiting for its
//     original's truncation, one ignored for its age, an excluded one);
//   - it was read from its first byte (or from a checkpoint, before which an earlier run had it
//     acknowledged): not a file started at its end (readFrom tail, ignoreOlder);
//   - every byte of it up to its size now was read and acknowledged upstream, and its size and
//     modification time are those of the Tailer's last check;
//   - nothing was written to it for Settle: its modification time, and the last growth the
//     Tailer saw, are at least Settle old;
//   - no other input of the pod (another container) tails it (Options.TailedElsewhere): that
//     one may not have read it yet;
//   - a newer file exists: some other file (another inode) that the tail globs find and the
//     cleanup globs do not was modified at or after it. The live file is what its app writes now; a rotated file is older
//     than the live file that replaced it (rename and create: the new file is created after the
//     last write to the old; copytruncate: the truncation, and the writes after it, come after
//     the copy). This keeps a cleanup glob that matches a live file by mistake from removing it
//     while the app is idle -- as long as no other file the tail globs find (another app's log)
//     is written meanwhile: nothing here tells whose file is whose.
//
// Right before removing, the file at the path is opened and checked to be the same inode with
// the same first bytes (its fingerprint), and its path is checked again to name that inode. An
// open file that is removed stays open until RotateWait passes without growth, as a deleted one
// does: a writer that had not reopened its log yet loses nothing it writes meanwhile.

// keep is why a file the cleanup globs found is kept; removeIt removes it.
type keep uint8

const (
	removeIt     keep = iota
	keepUnknown       // the Tailer holds no content on its inode: never opened
	keepSkipped       // started past its first byte (readFrom tail, ignoreOlder): those bytes were never shipped
	keepChanged       // size or modification time are not those of the last check: a writer is at it
	keepUnread        // bytes past what was read
	keepUnacked       // read, but not all acknowledged yet
	keepRecent        // modified, or seen growing, within Settle
	keepNewest        // no other file the tail globs find is as new: it may be the live file
	keepExcluded      // the tail globs do not match it, or an exclude glob does: never read
	keepShared        // another container's tail globs match it too: it may not have read it
	numKeeps
)

var keepReasons = [...]string{
	removeIt:     "",
	keepUnknown:  "not read by the agent",
	keepSkipped:  "not read from its first byte",
	keepChanged:  "changed since it was last read",
	keepUnread:   "not read to its end",
	keepUnacked:  "not all acknowledged",
	keepRecent:   "written to within the settle period",
	keepNewest:   "no newer file: it may be the live one",
	keepExcluded: "not tailed",
	keepShared:   "tailed by another container too",
}

// keepLabels are the values of the reason label of sidelog_cleanup_kept_files.
var keepLabels = [...]string{
	keepUnknown:  "not_read",
	keepSkipped:  "not_read_from_start",
	keepChanged:  "changed",
	keepUnread:   "unread",
	keepUnacked:  "unacknowledged",
	keepRecent:   "recently_written",
	keepNewest:   "newest",
	keepExcluded: "not_tailed",
	keepShared:   "tailed_elsewhere",
}

func (k keep) String() string { return keepReasons[k] }

// holding is what the Tailer knows of the content on one inode, for mayRemove.
type holding struct {
	offset, acked int64     // read up to (the end of the last complete record), acknowledged up to
	size          int64     // size at the last check
	modTime       time.Time // modification time at the last check
	lastData      time.Time // when the Tailer last saw it grow, or opened it
	skipped       bool      // started past its first byte
}

// mayRemove decides whether a file found by the cleanup globs with size and modTime may be
// removed at now: h is what the Tailer holds of its inode (nil for nothing); newest is the
// latest modification time of the files the tail globs found that the cleanup globs do not
// match (zero for none).
func mayRemove(h *holding, size int64, modTime, newest, now time.Time, settle time.Duration) keep {
	switch {
	case h == nil:
		return keepUnknown
	case h.skipped:
		return keepSkipped
	case size != h.size || !modTime.Equal(h.modTime):
		return keepChanged
	case h.offset < size:
		return keepUnread
	case h.acked < size:
		return keepUnacked
	case now.Sub(modTime) < settle || now.Sub(h.lastData) < settle:
		return keepRecent
	case newest.IsZero() || newest.Before(modTime):
		return keepNewest
	}
	return removeIt
}

// holdingOf returns what f says of its content.
func holdingOf(f *File) *holding {
	return &holding{offset: f.boundary(), acked: f.acked.Load(), size: f.pos.Size, modTime: f.pos.ModTime,
		lastData: f.lastData, skipped: f.skipped}
}

// cleanEvery is how often the cleanup globs are expanded: a tenth of Settle, within a second
// and ten. A file is removed that much after it could be at the latest; nobody waits for it.
func cleanEvery(settle time.Duration) time.Duration {
	return min(max(settle/10, time.Second), 10*time.Second)
}

// clean removes the files the cleanup globs find that mayRemove allows. It runs after a full
// scan, which found newest.
func (t *Tailer) clean(now time.Time) {
	if t.cleanup == nil || now.Sub(t.lastClean) < cleanEvery(t.opts.CleanupSettle) {
		return
	}
	t.lastClean = now
	paths, err := t.cleanup.Files()
	if err != nil && err.Error() != t.lastCleanErr {
		t.log.Warn("finding files to remove", "err", err)
	}
	t.lastCleanErr = ""
	if err != nil {
		t.lastCleanErr = err.Error()
	}
	// Why each file found is kept, for sidelog_cleanup_kept_files: what a user who wonders why
	// nothing goes away needs to see.
	var kept [numKeeps]int64
	defer func() {
		for k := keepUnknown; k < numKeeps; k++ {
			t.m.kept[k].Set(kept[k])
		}
	}()
	for _, p := range paths {
		if !t.globs.Match(p) {
			kept[keepExcluded]++
			continue // not tailed (excluded): never read, never removed
		}
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue // gone, or a link: only the file itself is removed, at its own name
		}
		id, ok := fingerprint.IDOf(fi)
		if !ok {
			continue
		}
		f := t.byID[id]
		if f == nil {
			f = t.tr.parkedFile(id)
		}
		var h *holding
		if f != nil {
			h = holdingOf(f)
		}
		if k := mayRemove(h, fi.Size(), fi.ModTime(), t.newestBut(id), now, t.opts.CleanupSettle); k != removeIt {
			kept[k]++
			continue
		}
		if t.opts.TailedElsewhere != nil && t.opts.TailedElsewhere(p) {
			kept[keepShared]++
			// Delivered for this container, perhaps not for the other: keep it, and say
			// why once, since it is kept for good.
			if !t.shared[id] {
				t.shared[id] = true
				t.log.Warn("not removing a delivered file: another container's tail globs match it too, and it may not have read it",
					"path", p, "cleanup", t.opts.Cleanup)
			}
			continue
		}
		if err := t.remove(f, p, id, fi.Size()); err != nil {
			t.m.removeErrors.Inc()
			if t.removeErr[id] != err.Error() {
				t.removeErr[id] = err.Error()
				t.log.Warn("removing delivered file", "path", p, "err", err)
			}
			continue
		}
		delete(t.removeErr, id)
		t.m.removed.Inc()
		t.m.removedBytes.Add(uint64(fi.Size()))
		t.log.Info("removed delivered file: every byte acknowledged", "path", p, "bytes", fi.Size(),
			"modified", fi.ModTime().UTC().Format(time.RFC3339))
		if f.rd != nil {
			f.goneAt = now // retired after RotateWait without growth, as a deleted file is
			continue
		}
		t.setParked(slices.DeleteFunc(slices.Clone(t.tr.parked), func(q *File) bool { return q == f }))
	}
	for id := range t.removeErr {
		if t.byID[id] == nil && t.tr.parkedFile(id) == nil {
			delete(t.removeErr, id)
		}
	}
	for id := range t.shared {
		if t.byID[id] == nil && t.tr.parkedFile(id) == nil {
			delete(t.shared, id)
		}
	}
}

// newestBut returns the latest modification time of the files the last scan found that the
// cleanup globs do not match, other than the content on id: the live file reached through a
// symlink or a hard link that the cleanup globs do not match is the same file, not a newer one.
func (t *Tailer) newestBut(id fingerprint.ID) time.Time {
	var newest time.Time
	for other, m := range t.live {
		if other != id && m.After(newest) {
			newest = m
		}
	}
	return newest
}

// errIdentity says the file at a path is no longer the content that was judged.
var errIdentity = errors.New("the file changed under its name since it was checked: kept")

// remove removes the file at p once it has checked that p still holds f's content: the inode id,
// size bytes, and f's first bytes.
func (t *Tailer) remove(f *File, p string, id fingerprint.ID, size int64) error {
	fd, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return err
	}
	if got, _ := fingerprint.IDOf(fi); got != id || fi.Size() != size {
		return errIdentity
	}
	fp := f.pos.Fingerprint
	if int64(fp.Len) < min(size, int64(t.opts.FingerprintSize)) {
		return errIdentity // a short fingerprint that does not cover what the file holds now
	}
	if same, err := fp.Match(fd, t.headBuf); err != nil {
		return fmt.Errorf("reading its first bytes: %w", err)
	} else if !same {
		return errIdentity
	}
	// The narrowest window: a rotation that moves another file to p between this check and the
	// removal removes that file's name only; the Tailer holds the live file open and reads it to
	// its end, as it does a file deleted by the rotation itself.
	li, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if got, _ := fingerprint.IDOf(li); got != id {
		return errIdentity
	}
	return os.Remove(p)
}
