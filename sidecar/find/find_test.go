package find

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tree creates files (and the directories they need) under a new temporary directory.
func tree(t testing.TB, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if strings.HasSuffix(f, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFiles(t *testing.T) {
	files := []string{
		"app/a.log", "app/b.log", "app/b.log.1", "app/c.txt",
		"app/audit/x.json", "app/audit/deep/y.json", "app/audit/deep/z.log",
		"app/empty/", "app/dir.log/",
		"other/a.log",
	}
	tests := []struct {
		name             string
		include, exclude []string
		want             []string
	}{
		{"star", []string{"/app/*.log"}, nil, []string{"app/a.log", "app/b.log"}},
		{"literal", []string{"/app/a.log"}, nil, []string{"app/a.log"}},
		{"literal missing", []string{"/app/none.log"}, nil, nil},
		{"literal directory is not a file", []string{"/app/dir.log"}, nil, nil},
		{"missing directory", []string{"/nope/*.log"}, nil, nil},
		{"two globs overlap", []string{"/app/*.log", "/app/a.*"}, nil, []string{"app/a.log", "app/b.log"}},
		{"rotated too", []string{"/app/*.log*"}, nil, []string{"app/a.log", "app/b.log", "app/b.log.1"}},
		{"exclude", []string{"/app/*.log*"}, []string{"/app/*.1"}, []string{"app/a.log", "app/b.log"}},
		{"doublestar zero dirs", []string{"/app/**/a.log"}, nil, []string{"app/a.log"}},
		{"doublestar any depth", []string{"/app/**/*.json"}, nil, []string{"app/audit/deep/y.json", "app/audit/x.json"}},
		{"doublestar last", []string{"/app/audit/**"}, nil, []string{"app/audit/deep/y.json", "app/audit/deep/z.log", "app/audit/x.json"}},
		{"doublestar twice", []string{"/app/**/**/z.log"}, nil, []string{"app/audit/deep/z.log"}},
		{"doublestar exclude", []string{"/app/**/*.log"}, []string{"/app/audit/**"}, []string{"app/a.log", "app/b.log"}},
		{"star dir", []string{"/*/a.log"}, nil, []string{"app/a.log", "other/a.log"}},
		{"class and question mark", []string{"/app/[ab].lo?"}, nil, []string{"app/a.log", "app/b.log"}},
	}
	root := tree(t, files...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(prefix(root, tt.include), prefix(root, tt.exclude))
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Files()
			if err != nil {
				t.Fatal(err)
			}
			want := prefix(root, tt.want)
			if !slices.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			for _, p := range got {
				if !g.Match(p) {
					t.Errorf("Files returned %s but Match says no", p)
				}
			}
		})
	}
}

func prefix(root string, ps []string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, root+"/"+strings.TrimPrefix(p, "/"))
	}
	return out
}

func TestSymlinks(t *testing.T) {
	root := tree(t, "real/a.log", "logs/")
	if err := os.Symlink(root+"/real", root+"/logs/linked"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(root+"/logs", root+"/logs/loop"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(root+"/real/a.log", root+"/logs/b.log"); err != nil {
		t.Fatal(err)
	}
	g, err := New([]string{root + "/logs/*/a.log", root + "/logs/**/*.log"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.Files()
	if err != nil {
		t.Fatal(err)
	}
	// A named segment follows the link; "**" neither follows it nor loops.
	want := []string{root + "/logs/b.log", root + "/logs/linked/a.log"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestUnreadableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every directory")
	}
	root := tree(t, "ok/a.log", "locked/b.log")
	if err := os.Chmod(root+"/locked", 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(root+"/locked", 0o755) })
	g, err := New([]string{root + "/*/*.log"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.Files()
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("err = %v, want one naming the locked directory", err)
	}
	if !slices.Equal(got, []string{root + "/ok/a.log"}) {
		t.Errorf("got %q, want the readable file still", got)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		include, exclude []string
		want             string
	}{
		{nil, nil, "no paths"},
		{[]string{"relative/*.log"}, nil, "paths[0]"},
		{[]string{"/a/../b"}, nil, "paths[0]"},
		{[]string{"/a/*.log"}, []string{"/a/[x"}, "exclude[0]"},
		{[]string{"/a/x**"}, nil, "whole path segment"},
	}
	for _, tt := range tests {
		_, err := New(tt.include, tt.exclude)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q, %q) = %v, want error containing %q", tt.include, tt.exclude, err, tt.want)
		}
	}
}

func TestMatch(t *testing.T) {
	g, err := New([]string{"/var/log/**/*.log"}, []string{"/var/log/skip/**"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"/var/log/a.log":        true,
		"/var/log/x/y/a.log":    true,
		"/var/log/skip/a.log":   false,
		"/var/log/a.txt":        false,
		"/var/a.log":            false,
		"var/log/a.log":         false,
		"/var/log/skip2/a.log":  true,
		"/var/log/x/skip/a.log": true,
	} {
		if got := g.Match(name); got != want {
			t.Errorf("Match(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestMatchDoublestars(t *testing.T) {
	tests := []struct {
		glob, name string
		want       bool
	}{
		{"/**", "/a", true},
		{"/**", "/a/b/c", true},
		{"/a/**", "/a/b", true},
		{"/**/a", "/a", true},
		{"/**/a", "/x/y/a", true},
		{"/**/a", "/x/a/y", false},
		{"/**/a/**", "/a/b", true},
		{"/**/a/**/b", "/a/b", true},
		{"/**/a/**/b", "/x/a/y/a/b", true},
		{"/**/a/**/b", "/b/a", false},
		{"/**/a/b", "/a/a/b", true},
		{"/**/a/b", "/a/b/b", false},
		{"/x/**/**/**/y", "/x/y", true},
		{"/x/**/**/**/y", "/x/1/2/3/4/y", true},
		{"/x/**/*.log", "/x/a/b.txt", false},
		{"/x/*/**/z", "/x/z", false},
		{"/x/*/**/z", "/x/y/z", true},
	}
	for _, tt := range tests {
		g, err := New([]string{tt.glob}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Match(tt.name); got != tt.want {
			t.Errorf("Match(%s) with %s = %v, want %v", tt.name, tt.glob, got, tt.want)
		}
	}
}

// TestManyDoublestars has globs of many "**" over a deep tree. Each split of the directories
// among the "**" is a way to reach the same file; walking or matching them one by one would
// take longer than the universe has, so finishing at all is the test.
func TestManyDoublestars(t *testing.T) {
	deep := strings.Repeat("x/", 20)
	root := tree(t, deep+"a.log", "x/b.log", deep+"c.txt")
	tests := []struct {
		glob string
		want []string
	}{
		{strings.Repeat("/**", 40) + "/*.log", []string{"/x/b.log", "/" + deep + "a.log"}},
		{strings.Repeat("/**/x", 15) + "/**/*.log", []string{"/" + deep + "a.log"}},
	}
	for _, tt := range tests {
		g, err := New([]string{root + tt.glob}, []string{root + strings.Repeat("/**/x", 25) + "/**/none"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := g.Files()
		if err != nil {
			t.Fatal(err)
		}
		if want := prefix(root, tt.want); !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", tt.glob, got, want)
		}
	}
	g, err := New([]string{"/" + strings.Repeat("**/a/", 30) + "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if name := "/" + strings.Repeat("a/", 60) + "c"; g.Match(name) {
		t.Errorf("Match(%s) = true", name)
	}
	if name := "/" + strings.Repeat("a/", 60) + "b"; !g.Match(name) {
		t.Errorf("Match(%s) = false", name)
	}
}

// BenchmarkFiles measures a scan of three directories of 50 files each, as every poll does.
func BenchmarkFiles(b *testing.B) {
	var files []string
	for _, d := range []string{"app", "app/audit", "web"} {
		for i := range 50 {
			files = append(files, fmt.Sprintf("%s/f%02d.log", d, i))
		}
	}
	root := tree(b, files...)
	g, err := New([]string{root + "/app/*.log", root + "/app/audit/*.log", root + "/web/**/*.log"}, []string{root + "/web/f0*.log"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := g.Files()
		if err != nil || len(got) != 140 {
			b.Fatalf("%d files, %v", len(got), err)
		}
	}
}
