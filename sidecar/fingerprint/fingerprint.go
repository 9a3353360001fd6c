// Package fingerprint identifies log files across rotation, renames and agent restarts.
//
// A file is who its first bytes say: the fingerprint is the SHA-256 of its first Size bytes (fewer
// while the file is shorter). Files only grow until they are truncated, so a fingerprint taken
// when a file was short still matches once it grew: matching compares it with the same number of
// the candidate's first bytes (a prefix match).
//
// A short fingerprint says little (many logs start with the same date), so while a fingerprint is
// shorter than Size the file's device and inode must match too. For a file that is still open,
// dev+inode alone is reliable (the open descriptor keeps the inode from being reused); fingerprints
// matter when a file is closed: when resuming from a checkpoint, and when deciding whether a path
// now holds a different file.
package fingerprint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
)

// Size is the default number of leading bytes that identify a file.
const Size = 1024

// ID is where a file lives on disk: its device and inode numbers.
type ID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// IDOf returns the device and inode of fi, and false where the platform does not provide them.
func IDOf(fi fs.FileInfo) (ID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ID{}, false
	}
	// The conversions matter where Stat_t uses narrower types (Dev is int32 on darwin).
	return ID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, true
}

// String renders the ID as dev:ino.
func (id ID) String() string { return fmt.Sprintf("%d:%d", id.Dev, id.Ino) }

// Fingerprint is the hash of a file's first Len bytes.
type Fingerprint struct {
	Len int
	Sum [sha256.Size]byte
}

// Of returns the fingerprint of b.
func Of(b []byte) Fingerprint { return Fingerprint{Len: len(b), Sum: sha256.Sum256(b)} }

// Read returns the fingerprint of r's first len(buf) bytes, or of all of r if it is shorter.
// buf is scratch space; its length is the fingerprint size (usually Size).
func Read(r io.ReaderAt, buf []byte) (Fingerprint, error) {
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Fingerprint{}, fmt.Errorf("reading fingerprint: %w", err)
	}
	return Of(buf[:n]), nil
}

// Full reports whether f covers size bytes, the most a fingerprint of that size holds.
func (f Fingerprint) Full(size int) bool { return f.Len >= size }

// Match reports whether f was taken from the beginning of r's content: r holds at least f.Len
// bytes and its first f.Len bytes hash to f.Sum. buf must hold at least f.Len bytes.
func (f Fingerprint) Match(r io.ReaderAt, buf []byte) (bool, error) {
	if f.Len == 0 {
		return true, nil
	}
	if len(buf) < f.Len {
		return false, fmt.Errorf("matching fingerprint: buffer of %d bytes for a %d-byte fingerprint", len(buf), f.Len)
	}
	n, err := r.ReadAt(buf[:f.Len], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("matching fingerprint: %w", err)
	}
	return n == f.Len && sha256.Sum256(buf[:n]) == f.Sum, nil
}

type fingerprintJSON struct {
	Len    int    `json:"len"`
	SHA256 string `json:"sha256"`
}

// MarshalJSON writes f as {"len":N,"sha256":"hex"}.
func (f Fingerprint) MarshalJSON() ([]byte, error) {
	return json.Marshal(fingerprintJSON{Len: f.Len, SHA256: hex.EncodeToString(f.Sum[:])})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Fingerprint) UnmarshalJSON(b []byte) error {
	var j fingerprintJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("fingerprint: %w", err)
	}
	if j.Len < 0 {
		return fmt.Errorf("fingerprint: len %d is negative", j.Len)
	}
	sum, err := hex.DecodeString(j.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("fingerprint: sha256 %q is not %d hex-encoded bytes", j.SHA256, sha256.Size)
	}
	f.Len = j.Len
	copy(f.Sum[:], sum)
	return nil
}

// Identity is what is remembered about a file to recognise it later, when it is no longer open.
type Identity struct {
	ID
	Fingerprint Fingerprint `json:"fingerprint"`
}

// Match reports whether the file at id, readable through r, is the file that k was taken from.
// len(buf) is the fingerprint size (usually Size): a full fingerprint is matched on content
// alone, so the file may have been copied or moved; a shorter one also needs the same dev+inode
// (a new file that happens to start with the same few bytes is not mistaken for it).
//
// A match may still be wrong in two ways no fingerprint can rule out: two distinct files whose
// first len(buf) bytes are equal, and a reused inode whose new content starts with the same
// bytes as a short fingerprint. Both make the agent skip what looks already read.
func (k Identity) Match(id ID, r io.ReaderAt, buf []byte) (bool, error) {
	if !k.Fingerprint.Full(len(buf)) && id != k.ID {
		return false, nil
	}
	return k.Fingerprint.Match(r, buf)
}
