package tail

import (
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

// The tracker's rules as tables: each row is a situation and the decision it must lead to. The
// defects of issue #9 that the tracker decides are rows here too (marked "defect").

const testFP = 16 // fingerprint size of these tables: heads of 16 bytes are full

var (
	inoA = fingerprint.ID{Dev: 1, Ino: 10}
	inoB = fingerprint.ID{Dev: 1, Ino: 20}
	t0   = time.Unix(1_700_000_000, 0)
)

const (
	oldHead = "old content 0123456789" // longer than testFP
	newHead = "new content 0123456789"
)

func ident(id fingerprint.ID, content string) fingerprint.Identity {
	return fingerprint.Identity{ID: id, Fingerprint: fingerprint.Of([]byte(content[:min(len(content), testFP)]))}
}

func head(content string) []byte { return []byte(content[:min(len(content), testFP)]) }

func parkedAt(id fingerprint.ID, content string, offset, size int64) *File {
	return &File{Path: "/parked.log", pos: Position{Path: "/parked.log", Identity: ident(id, content), Offset: offset, Size: size, ModTime: t0}}
}

func savedAt(id fingerprint.ID, content string, offset int64) *saved {
	return &saved{Position: Position{Path: "/saved.log", Identity: ident(id, content), Offset: offset, Acked: offset}}
}

func TestTrackerIdentify(t *testing.T) {
	type want struct {
		act    act
		offset int64
		from   string // remembered content resumed: "parked", "saved", "cut" or ""
		stale  int
	}
	for _, tt := range []struct {
		name   string
		parked []*File
		saved  []*saved
		cut    []*cut
		seen   []fingerprint.ID
		start  map[fingerprint.ID]int64 // startAt before the sighting
		before []sighting               // earlier sightings in the same scan
		s      sighting
		want   want
	}{
		{name: "unknown file is read from its start",
			s: sighting{id: inoA, head: head(newHead), size: 100}, want: want{act: actFresh}},
		{name: "parked file, same inode and first bytes, resumes",
			parked: []*File{parkedAt(inoA, oldHead, 40, 47)},
			s:      sighting{id: inoA, head: head(oldHead), size: 60}, want: want{act: actResume, offset: 40, from: "parked"}},
		{name: "defect: parked file rewritten in place is stale, the file is new",
			parked: []*File{parkedAt(inoA, oldHead, 40, 47)},
			s:      sighting{id: inoA, head: head(newHead), size: 60}, want: want{act: actFresh, stale: 1}},
		{name: "parked file now shorter than its offset is stale",
			parked: []*File{parkedAt(inoA, oldHead, 40, 47)},
			s:      sighting{id: inoA, head: head(oldHead), size: 20}, want: want{act: actFresh, stale: 1}},
		{name: "saved position, same inode and first bytes, resumes",
			saved: []*saved{savedAt(inoA, oldHead, 30)},
			s:     sighting{id: inoA, head: head(oldHead), size: 60}, want: want{act: actResume, offset: 30, from: "saved"}},
		{name: "saved position, same inode, a short fingerprint that matches, resumes",
			saved: []*saved{savedAt(inoA, "short\n", 6)},
			s:     sighting{id: inoA, head: head("short\nand more\n"), size: 15}, want: want{act: actResume, offset: 6, from: "saved"}},
		{name: "short fingerprint on another inode is another file",
			saved: []*saved{savedAt(inoA, "short\n", 6)},
			s:     sighting{id: inoB, head: head("short\nand more\n"), size: 15}, want: want{act: actFresh}},
		{name: "same first bytes as a saved file whose inode is still found: a common header",
			saved: []*saved{savedAt(inoA, oldHead, 30)}, seen: []fingerprint.ID{inoA, inoB},
			s: sighting{id: inoB, head: head(oldHead), size: 60}, want: want{act: actFresh}},
		{name: "same first bytes as a saved file whose inode is gone: moved or copied",
			saved: []*saved{savedAt(inoA, oldHead, 30)}, seen: []fingerprint.ID{inoB},
			s: sighting{id: inoB, head: head(oldHead), size: 60}, want: want{act: actResume, offset: 30, from: "saved"}},
		{name: "defect: copytruncate while down, the copy resumes once the original was seen rewritten",
			saved: []*saved{savedAt(inoA, oldHead, 30)}, seen: []fingerprint.ID{inoA, inoB},
			before: []sighting{{id: inoA, head: head(newHead), size: 5}},
			s:      sighting{id: inoB, head: head(oldHead), size: 60}, want: want{act: actResume, offset: 30, from: "saved"}},
		{name: "fingerprint longer than ours cannot be checked",
			saved: []*saved{{Position: Position{Identity: fingerprint.Identity{ID: inoA, Fingerprint: fingerprint.Of([]byte(oldHead + oldHead))}, Offset: 30}}},
			s:     sighting{id: inoA, head: head(oldHead), size: 60}, want: want{act: actFresh}},
		{name: "copy of truncated content resumes where the original was left",
			cut: []*cut{{file: &File{Path: "/cut.log", pos: Position{Identity: ident(inoA, oldHead)}}, resume: 44}}, seen: []fingerprint.ID{inoA, inoB},
			s: sighting{id: inoB, head: head(oldHead), size: 60}, want: want{act: actResume, offset: 44, from: "cut"}},
		{name: "readFrom tail: a file found at start with no position starts at its size then",
			start: map[fingerprint.ID]int64{inoA: 80},
			s:     sighting{id: inoA, head: head(oldHead), size: 100}, want: want{act: actFresh, offset: 80}},
		{name: "readFrom tail: a saved position wins over the start",
			saved: []*saved{savedAt(inoA, oldHead, 30)}, start: map[fingerprint.ID]int64{inoA: 80},
			s: sighting{id: inoA, head: head(oldHead), size: 100}, want: want{act: actResume, offset: 30, from: "saved"}},
		{name: "readFrom tail: a file shorter than its start was replaced, read from 0",
			start: map[fingerprint.ID]int64{inoA: 80},
			s:     sighting{id: inoA, head: head(newHead), size: 20}, want: want{act: actFresh}},
		{name: "readFrom tail: another inode (a rotation's new file) is read from its start",
			start: map[fingerprint.ID]int64{inoA: 80},
			s:     sighting{id: inoB, head: head(newHead), size: 100}, want: want{act: actFresh}},
		{name: "readFrom tail: a parked file rewritten in place is new, from 0",
			parked: []*File{parkedAt(inoA, oldHead, 40, 47)}, start: map[fingerprint.ID]int64{inoA: 47},
			s: sighting{id: inoA, head: head(newHead), size: 60}, want: want{act: actFresh, stale: 1}},
		{name: "copy of an open file waits for the truncation",
			s: sighting{id: inoB, head: head(oldHead), size: 60, copyOf: "/app.log", waited: time.Second}, want: want{act: actDefer}},
		{name: "copy of an open file that was not truncated within RotateWait is another file",
			s: sighting{id: inoB, head: head(oldHead), size: 60, copyOf: "/app.log", waited: DefaultRotateWait}, want: want{act: actFresh}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(testFP, DefaultRotateWait)
			tr.parked, tr.saved, tr.cut = tt.parked, tt.saved, tt.cut
			for id, off := range tt.start {
				tr.startAt(id, off)
			}
			for _, id := range tt.seen {
				tr.seen[id] = true
			}
			for _, s := range tt.before {
				tr.identify(s)
			}
			v := tr.identify(tt.s)
			var from string
			switch {
			case v.parked != nil:
				from = "parked"
			case v.saved != nil:
				from = "saved"
			case v.cut != nil:
				from = "cut"
			}
			if v.act == actFresh {
				from = ""
			}
			got := want{act: v.act, offset: v.offset, from: from, stale: len(v.stale)}
			if got != tt.want {
				t.Errorf("identify = %+v, want %+v", got, tt.want)
			}
			if _, ok := tr.start[tt.s.id]; ok && v.act != actDefer {
				t.Errorf("start of %v still remembered after identify", tt.s.id)
			}
			// What is resumed or stale is forgotten: it must not match twice or stay behind.
			for _, p := range append(v.stale, v.parked) {
				if p != nil && tr.parkedFile(p.pos.ID) == p {
					t.Errorf("%s still parked after identify", p.Path)
				}
			}
		})
	}
}

func TestTrackerAdmit(t *testing.T) {
	for _, tt := range []struct {
		name     string
		parked   *File
		size     int64
		modTime  time.Time
		draining bool
		want     admission
	}{
		{"unknown file waits for a place", nil, 10, t0, false, admitWait},
		{"defect: parked at its end and unchanged stays closed", parkedAt(inoA, oldHead, 47, 47), 47, t0, false, admitIdle},
		{"parked file that grew waits for its turn", parkedAt(inoA, oldHead, 47, 47), 60, t0.Add(time.Second), false, admitWait},
		{"parked file written to with the same size waits for its turn", parkedAt(inoA, oldHead, 47, 47), 47, t0.Add(time.Second), false, admitWait},
		{"parked with an unfinished line, unchanged, stays closed", parkedAt(inoA, oldHead, 40, 47), 47, t0, false, admitIdle},
		{"parked with an unfinished line is read for it when draining", parkedAt(inoA, oldHead, 40, 47), 47, t0, true, admitWait},
		{"parked at its end stays closed when draining", parkedAt(inoA, oldHead, 47, 47), 47, t0, true, admitIdle},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(testFP, DefaultRotateWait)
			if tt.parked != nil {
				tr.parked = []*File{tt.parked}
			}
			if got := tr.admit(inoA, tt.size, tt.modTime, tt.draining); got != tt.want {
				t.Errorf("admit = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTrackerTooOld(t *testing.T) {
	const limit = 24 * time.Hour
	now := t0.Add(30 * 24 * time.Hour)
	for _, tt := range []struct {
		name    string
		parked  *File
		saved   *saved
		modTime time.Time
		limit   time.Duration
		want    bool
	}{
		{"modified within the limit is read", nil, nil, now.Add(-time.Hour), limit, false},
		{"older than the limit is ignored", nil, nil, now.Add(-48 * time.Hour), limit, true},
		{"exactly at the limit is read", nil, nil, now.Add(-limit), limit, false},
		{"no limit: every file is read", nil, nil, now.Add(-1000 * time.Hour), 0, false},
		{"a parked file is being read: never ignored", parkedAt(inoA, oldHead, 40, 47), nil, now.Add(-48 * time.Hour), limit, false},
		{"a checkpointed file resumes however old", nil, savedAt(inoA, oldHead, 30), now.Add(-48 * time.Hour), limit, false},
		{"a checkpoint of another inode does not save it", nil, savedAt(inoB, oldHead, 30), now.Add(-48 * time.Hour), limit, true},
		{"waiting for a place (maxFiles) when it became old: still read", nil, nil, now.Add(-48 * time.Hour), limit, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(testFP, DefaultRotateWait)
			if tt.parked != nil {
				tr.parked = []*File{tt.parked}
			}
			if tt.saved != nil {
				tr.saved = []*saved{tt.saved}
			}
			if strings.HasPrefix(tt.name, "waiting") {
				tr.waiting[inoA] = &candidate{id: inoA}
			}
			if got := tr.tooOld(inoA, tt.modTime, now, tt.limit); got != tt.want {
				t.Errorf("tooOld = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnreadWhenGone(t *testing.T) {
	for _, tt := range []struct {
		name   string
		c      *candidate
		parked *Position
		want   int64
	}{
		{"a file never opened lost all of it", &candidate{size: 100}, nil, 100},
		{"defect: a copy of an open file lost nothing", &candidate{size: 100, copyOf: "/app.log"}, nil, 0},
		{"defect: a parked file lost its unfinished line", nil, &Position{Offset: 40, Size: 47}, 7},
		{"a parked file that grew while waiting lost what it grew by too", &candidate{size: 60}, &Position{Offset: 40, Size: 47}, 20},
		{"a parked file read to its end lost nothing", nil, &Position{Offset: 47, Size: 47}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := unreadWhenGone(tt.c, tt.parked); got != tt.want {
				t.Errorf("unreadWhenGone = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestGrowth(t *testing.T) {
	for _, tt := range []struct {
		name                   string
		offset, seen, size     int64
		wantTruncated, wantCmp bool
	}{
		{"unchanged: the stat is all it costs", 50, 50, 50, false, false},
		{"grew: the first bytes tell a rewrite past the old size", 50, 50, 80, false, true},
		{"shorter than what was read: truncated", 50, 50, 10, true, false},
		{"shrank but not below what was read: the first bytes tell", 50, 90, 60, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			truncated, cmp := growth(tt.offset, tt.seen, tt.size)
			if truncated != tt.wantTruncated || cmp != tt.wantCmp {
				t.Errorf("growth = %v, %v; want %v, %v", truncated, cmp, tt.wantTruncated, tt.wantCmp)
			}
		})
	}
}
