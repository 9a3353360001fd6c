package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzInject feeds arbitrary manifests to Inject. It must not panic; what it writes must be
// read again to the same number of documents, and injecting its output again must write it
// unchanged (idempotence), whatever the input's shape.
func FuzzInject(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.in.*")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("{\"kind\":\"Pod\"}\n{\"kind\":\"List\",\"items\":[1,{}]}\n"))
	f.Add([]byte("---\n--- # x\n{a: 1}\n...\n"))
	f.Add([]byte("kind: Pod\nmetadata: {annotations: {sidelog.io/tail: &a /x/*.log, sidelog.io/upstream: *a}}\nspec: {containers: [{name: a}]}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var once bytes.Buffer
		if _, err := Inject(&once, bytes.NewReader(in), Options{}); err != nil {
			if once.Len() > 0 {
				t.Fatalf("wrote %d bytes with an error: %v", once.Len(), err)
			}
			return
		}
		inChunks, err := readInput(in, func(int) string { return "" })
		if err != nil {
			t.Fatalf("Inject succeeded on input that readInput refuses: %v", err)
		}
		outChunks, err := readInput(once.Bytes(), func(int) string { return "" })
		if err != nil {
			t.Fatalf("reading the output: %v\n%s", err, once.Bytes())
		}
		if a, b := countDocs(inChunks), countDocs(outChunks); a != b {
			t.Fatalf("%d documents in, %d out:\n%s", a, b, once.Bytes())
		}
		var twice bytes.Buffer
		if _, err := Inject(&twice, bytes.NewReader(once.Bytes()), Options{}); err != nil {
			t.Fatalf("injecting the output: %v\n%s", err, once.Bytes())
		}
		if !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("second pass changed the output:\n%s\n---- became\n%s", once.Bytes(), twice.Bytes())
		}
	})
}

func countDocs(chunks []*chunk) int {
	n := 0
	for _, c := range chunks {
		n += len(c.docs)
	}
	return n
}
