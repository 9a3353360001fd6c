// Package checkpoint keeps the agent's file positions across restarts: for every file, how far
// its records were acknowledged upstream.
//
// The positions live in one JSON file in the state directory (a pod-local emptyDir). Save
// replaces it atomically, so a crash leaves either the old or the new file, never a mix.
package checkpoint

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

// FileName is the name of the checkpoint file in the state directory.
const FileName = "positions.json"

// Version is the document version Save writes and Load accepts.
const Version = 1

// ErrCorrupt is wrapped by Load's error when the file exists but cannot be used: bad JSON, an
// unknown version or an impossible entry. At-least-once delivery prefers duplicates to loss, so
// the agent should log it, count it and start without positions (every file is read again from
// its start); the next Save replaces the bad file.
var ErrCorrupt = errors.New("corrupt checkpoint")

// Entry is the position of one file.
type Entry struct {
	// Container is the app container whose input the file belongs to.
	Container string `json:"container"`
	// Path is where the file was found; informative only (a file is matched by its Identity).
	Path string `json:"path"`
	fingerprint.Identity
	// Offset is the end of the last acknowledged record: reading resumes here.
	Offset int64 `json:"offset"`
	// Skipped says the file was read from past its first byte (read-from tail, ignore-older), so
	// its head was never shipped: the agent never removes it (sidelog.io/cleanup).
	Skipped bool `json:"skipped,omitempty"`
}

type document struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

// Path returns the checkpoint file's path in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Load reads the positions saved in dir. A missing file means no positions (a first start) and is
// not an error; a file that cannot be used gives an error that wraps ErrCorrupt and names it.
func Load(dir string) ([]Entry, error) {
	path := Path(dir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var doc document
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("reading checkpoint %s: %w: %w", path, ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("reading checkpoint %s: %w: data after the JSON document", path, ErrCorrupt)
	}
	if doc.Version != Version {
		return nil, fmt.Errorf("reading checkpoint %s: %w: version %d, want %d", path, ErrCorrupt, doc.Version, Version)
	}
	for i, e := range doc.Entries {
		if e.Offset < 0 {
			return nil, fmt.Errorf("reading checkpoint %s: %w: entries[%d].offset %d is negative", path, ErrCorrupt, i, e.Offset)
		}
	}
	return doc.Entries, nil
}

// Save replaces the positions in dir with entries: it writes a temporary file, syncs it, renames
// it over the checkpoint and syncs the directory, so that a crash at any point leaves a whole
// checkpoint. On a full or read-only disk it returns the error and leaves the old checkpoint in
// place; the caller logs it and tries again at the next save.
func Save(dir string, entries []Entry) error {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.Ino, b.Ino))
	})
	if sorted == nil {
		sorted = []Entry{}
	}
	b, err := json.Marshal(document{Version: Version, Entries: sorted})
	if err != nil {
		return fmt.Errorf("encoding checkpoint: %w", err)
	}
	b = append(b, '\n')

	path := Path(dir)
	// One fixed temporary name: a crash between create and rename leaves one stale file that the
	// next Save truncates, not a growing pile.
	tmp := path + ".tmp"
	if err := writeSynced(tmp, b); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("saving checkpoint %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("saving checkpoint %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("saving checkpoint %s: syncing directory: %w", path, err)
	}
	return nil
}

func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes the rename durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some filesystems cannot sync a directory and say so with EINVAL; the rename is then as
	// durable as that filesystem makes it.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
