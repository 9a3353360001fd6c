package fingerprint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

// identity opens path and returns its ID and fingerprint (size bytes).
func identity(t *testing.T, path string, size int) Identity {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := IDOf(fi)
	if !ok {
		t.Skip("no dev+inode on this platform")
	}
	fp, err := Read(f, make([]byte, size))
	if err != nil {
		t.Fatal(err)
	}
	return Identity{ID: id, Fingerprint: fp}
}

func match(t *testing.T, k Identity, path string, size int) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := IDOf(fi)
	ok, err := k.Match(id, f, make([]byte, size))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMatch(t *testing.T) {
	const size = 16
	long := strings.Repeat("0123456789abcdef", 2)
	tests := []struct {
		name string
		// before builds the files and returns the path whose identity is taken; after changes them
		// and returns the path to match against.
		before, after func(t *testing.T, dir string) string
		want          bool
	}{
		{
			name:   "same short file",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", "hello\n"); return dir + "/a" },
			after:  func(t *testing.T, dir string) string { return dir + "/a" },
			want:   true,
		},
		{
			name:   "short file grew: prefix match",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", "hello\n"); return dir + "/a" },
			after: func(t *testing.T, dir string) string {
				appendTo(t, dir+"/a", "world, this is much longer than sixteen bytes\n")
				return dir + "/a"
			},
			want: true,
		},
		{
			name:   "short file renamed keeps its inode",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", "hello\n"); return dir + "/a" },
			after: func(t *testing.T, dir string) string {
				if err := os.Rename(dir+"/a", dir+"/b"); err != nil {
					t.Fatal(err)
				}
				return dir + "/b"
			},
			want: true,
		},
		{
			name:   "short copy with equal content is another file",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", "hello\n"); return dir + "/a" },
			after:  func(t *testing.T, dir string) string { write(t, dir+"/b", "hello\n"); return dir + "/b" },
			want:   false,
		},
		{
			name:   "full copy with equal first bytes is the same file",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", long); return dir + "/a" },
			after: func(t *testing.T, dir string) string {
				write(t, dir+"/b", long[:size]+"different tail")
				return dir + "/b"
			},
			want: true,
		},
		{
			name:   "truncated and rewritten",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", "hello\n"); return dir + "/a" },
			after:  func(t *testing.T, dir string) string { write(t, dir+"/a", "HELLO\n"); return dir + "/a" },
			want:   false,
		},
		{
			name:   "now shorter than the fingerprint",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", "hello\n"); return dir + "/a" },
			after:  func(t *testing.T, dir string) string { write(t, dir+"/a", "hel"); return dir + "/a" },
			want:   false,
		},
		{
			name:   "empty file: only the inode says",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", ""); return dir + "/a" },
			after:  func(t *testing.T, dir string) string { appendTo(t, dir+"/a", "anything\n"); return dir + "/a" },
			want:   true,
		},
		{
			name:   "empty file: another inode",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", ""); return dir + "/a" },
			after:  func(t *testing.T, dir string) string { write(t, dir+"/b", ""); return dir + "/b" },
			want:   false,
		},
		{
			// The inode of a deleted file is reused (here: the same path recreated, which on most
			// filesystems hands out the freed inode); its different content must not match.
			name:   "inode reuse with new content",
			before: func(t *testing.T, dir string) string { write(t, dir+"/a", "old content\n"); return dir + "/a" },
			after: func(t *testing.T, dir string) string {
				if err := os.Remove(dir + "/a"); err != nil {
					t.Fatal(err)
				}
				write(t, dir+"/a", "new content\n")
				return dir + "/a"
			},
			want: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			k := identity(t, tt.before(t, dir), size)
			if got := match(t, k, tt.after(t, dir), size); got != tt.want {
				t.Errorf("Match = %v, want %v (fingerprint of %d bytes)", got, tt.want, k.Fingerprint.Len)
			}
		})
	}
}

func TestReadShortAndLong(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	write(t, p, "abc")
	if k := identity(t, p, Size); k.Fingerprint != Of([]byte("abc")) || k.Fingerprint.Full(Size) {
		t.Errorf("short file: got %+v", k.Fingerprint)
	}
	write(t, p, strings.Repeat("x", 2*Size))
	k := identity(t, p, Size)
	if k.Fingerprint.Len != Size || !k.Fingerprint.Full(Size) || k.Fingerprint != Of([]byte(strings.Repeat("x", Size))) {
		t.Errorf("long file: got len %d", k.Fingerprint.Len)
	}
}

func TestJSON(t *testing.T) {
	in := Identity{ID: ID{Dev: 2049, Ino: 77}, Fingerprint: Of([]byte("hello\n"))}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"dev":2049,"ino":77,"fingerprint":{"len":6,"sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var out Identity
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip: got %+v, want %+v", out, in)
	}
	for _, bad := range []string{
		`{"len":6,"sha256":"zz"}`,
		`{"len":-1,"sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"}`,
		`{"len":6,"sha256":"5891"}`,
		`{"len":6,"sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","x":1}`,
	} {
		var f Fingerprint
		if err := json.Unmarshal([]byte(bad), &f); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}
