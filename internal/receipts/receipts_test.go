package receipts

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden: each testdata/*.json (what kubectl get -o json prints) gives the table of its
// .golden file: a Job's pods (a receipt with drops, an agent still running, one killed before
// it wrote one, a drain that ran out of time), a legacy agent's receipt with containers summed,
// and a stream of pods without a receipt for every other reason.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pods, err := ReadPods(f)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := Write(&got, Rows(pods)); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("table (-want +got), go test -update rewrites it:\n%s", diff)
			}
		})
	}
}

func TestReadPodsRefuses(t *testing.T) {
	for in, want := range map[string]string{
		``: "no input",
		`{"kind":"Job","metadata":{"name":"report-1"}}`:   "batch.kubernetes.io/job-name=report-1",
		`{"kind":"Deployment","metadata":{"name":"web"}}`: "a Deployment is not a pod",
		`apiVersion: v1`: "kubectl get -o json output is expected",
		`{"kind":"List","items":[{"kind":"Service"}]}`: "item 0: a Service is not a pod",
		`{"metadata":{"name":"p"}}`:                    "no kind",
	} {
		_, err := ReadPods(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadPods(%q) = %v, want an error with %q", in, err, want)
		}
	}
}
