package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/sidecar/fingerprint"
)

func entries() []Entry {
	return []Entry{
		{Container: "web", Path: "/var/log/b.log", Offset: 10,
			Identity: fingerprint.Identity{ID: fingerprint.ID{Dev: 1, Ino: 2}, Fingerprint: fingerprint.Of([]byte("b"))}},
		{Container: "app", Path: "/var/log/a.log", Offset: 4096,
			Identity: fingerprint.Identity{ID: fingerprint.ID{Dev: 1, Ino: 3}, Fingerprint: fingerprint.Of([]byte("a"))}},
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	in := entries()
	if err := Save(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{in[1], in[0]} // sorted by container
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got  %+v\nwant %+v", out, want)
	}
	// Saving again replaces, and leaves no temporary file behind.
	if err := Save(dir, in[:1]); err != nil {
		t.Fatal(err)
	}
	if out, err = Load(dir); err != nil || len(out) != 1 {
		t.Fatalf("after second save: %v entries, err %v", len(out), err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name() != FileName {
		t.Errorf("state dir holds %v, want only %s", names, FileName)
	}
}

func TestSaveEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := Save(dir, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"version":1,"entries":[]}`+"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLoadMissing(t *testing.T) {
	got, err := Load(t.TempDir())
	if err != nil || got != nil {
		t.Errorf("Load of an empty dir = %v, %v; want nil, nil", got, err)
	}
}

func TestLoadCorrupt(t *testing.T) {
	tests := []struct{ name, content, wantErr string }{
		{"not json", "{not json", "invalid character"},
		{"truncated", `{"version":1,"entries":[{"container":"a"`, "unexpected EOF"},
		{"wrong version", `{"version":2,"entries":[]}`, "version 2, want 1"},
		{"missing version", `{"entries":[]}`, "version 0, want 1"},
		{"unknown field", `{"version":1,"entries":[],"extra":true}`, "unknown field"},
		{"negative offset", `{"version":1,"entries":[{"container":"a","path":"/x","dev":1,"ino":2,"fingerprint":{"len":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},"offset":-5}]}`, "entries[0].offset -5 is negative"},
		{"bad fingerprint", `{"version":1,"entries":[{"container":"a","path":"/x","dev":1,"ino":2,"fingerprint":{"len":1,"sha256":"00"},"offset":5}]}`, "sha256"},
		{"two documents", `{"version":1,"entries":[]}{"version":1,"entries":[]}`, "data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(Path(dir), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), Path(dir)) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to name %s and say %q", err, Path(dir), tt.wantErr)
			}
		})
	}
}

func TestSaveReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write into a read-only directory")
	}
	dir := t.TempDir()
	if err := Save(dir, entries()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	err := Save(dir, entries()[:1])
	if err == nil || !strings.Contains(err.Error(), Path(dir)) {
		t.Fatalf("Save into a read-only dir: err = %v, want an error naming the file", err)
	}
	// The old checkpoint is intact.
	if got, err := Load(dir); err != nil || len(got) != 2 {
		t.Errorf("after failed save: %d entries, err %v; want the 2 saved before", len(got), err)
	}
}

// TestSaveFullDisk writes to /dev/full, which fails every write with ENOSPC, through a symlink
// at the temporary file's name.
func TestSaveFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	dir := t.TempDir()
	if err := Save(dir, entries()); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/full", filepath.Join(dir, FileName+".tmp")); err != nil {
		t.Fatal(err)
	}
	err := Save(dir, entries()[:1])
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Save onto a full disk: err = %v, want ENOSPC", err)
	}
	if got, err := Load(dir); err != nil || len(got) != 2 {
		t.Errorf("after failed save: %d entries, err %v; want the 2 saved before", len(got), err)
	}
}

func TestSaveMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	if err := Save(dir, entries()); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
}
