package manifest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/injector"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func inputs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs in testdata: %v", err)
	}
	return files
}

func TestInjectGolden(t *testing.T) {
	for _, file := range inputs(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := Inject(&out, bytes.NewReader(in), nil); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update creates it)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", golden, diff)
			}
		})
	}
}

// TestInjectIdempotent: injecting the output again writes it byte for byte.
func TestInjectIdempotent(t *testing.T) {
	for _, file := range inputs(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var once, twice bytes.Buffer
			if _, err := Inject(&once, bytes.NewReader(in), nil); err != nil {
				t.Fatal(err)
			}
			if _, err := Inject(&twice, bytes.NewReader(once.Bytes()), nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(once.String(), twice.String()); diff != "" {
				t.Errorf("second pass changed the output (-once +twice):\n%s", diff)
			}
		})
	}
}

func TestInjectPassesThrough(t *testing.T) {
	for _, in := range []string{
		"",
		"# only a comment\n",
		"apiVersion: v1\nkind: ConfigMap   # keep me\nmetadata: {name: x}\ndata: {a: b}\n",
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {sidelog.io/inject: \"false\", sidelog.io/tail: /x}\nspec:\n  containers: [{name: a, image: b}]\n",
		"- just\n- a list\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
		"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
	} {
		var out bytes.Buffer
		ws, err := Inject(&out, strings.NewReader(in), nil)
		if err != nil || len(ws) > 0 {
			t.Errorf("Inject(%q): warnings %v, error %v", in, ws, err)
		}
		if out.String() != in {
			t.Errorf("Inject(%q) wrote %q, want the input unchanged", in, out.String())
		}
	}
}

const refusedDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      annotations: {sidelog.io/tail.api: /logs/*.log, sidelog.io/upstream: "a:1"}
    spec:
      containers: [{name: app, image: x}]
`

const legacyCronJob = `apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {sidelog.io/tail: /logs/*.log, sidelog.io/upstream: "a:1", sidelog.io/sidecar-mode: legacy}
        spec:
          restartPolicy: OnFailure
          containers: [{name: app, image: x, volumeMounts: [{name: l, mountPath: /logs}]}]
          volumes: [{name: l, emptyDir: {}}]
`

func TestInjectErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"unknown container", refusedDeployment, []string{
			`document 1 (Deployment shop/web): sidelog.io/tail.api: the pod has no app container "api"; its app containers are app`}},
		{"legacy CronJob", legacyCronJob, []string{
			`document 1 (CronJob nightly): sidelog.io/sidecar-mode: legacy mode adds the agent as a regular container, which keeps running after the app finishes, so Job "nightly" would never complete; set sidelog.io/sidecar-mode: native (needs Kubernetes 1.29 or later)`}},
		{"every refused document is named", refusedDeployment + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n" + legacyCronJob, []string{
			`document 1 (Deployment shop/web): sidelog.io/tail.api:`,
			`document 3 (CronJob nightly): sidelog.io/sidecar-mode:`}},
		{"bad YAML", "apiVersion: v1\nkind: [Pod\n", []string{"document 1: parsing YAML:"}},
		{"bad separator", "a: 1\n--- !tag\nb: 2\n", []string{"document 1: invalid Yaml document separator: !tag"}},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(refusedDeployment), "\n", "\n  ") + "\n", []string{
			`document 1 (Deployment shop/web): sidelog.io/tail.api:`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := Inject(&out, strings.NewReader(tt.in), nil)
			if err == nil {
				t.Fatalf("Inject succeeded:\n%s", out.String())
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("error has %d lines, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error line %d:\n got %s\nwant %s...", i, lines[i], w)
				}
			}
			if out.Len() > 0 {
				t.Errorf("Inject wrote %d bytes despite the error", out.Len())
			}
		})
	}
}

func TestInjectWarnings(t *testing.T) {
	p, err := injector.ParsePolicy([]byte("missingVolume: emptyDir"))
	if err != nil {
		t.Fatal(err)
	}
	in := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: shop\n  annotations: {sidelog.io/tail: /var/log/app/*.log, sidelog.io/upstream: \"a:1\"}\nspec:\n  securityContext: {runAsUser: 1000}\n  containers: [{name: app, image: b}]\n"
	var out bytes.Buffer
	ws, err := Inject(&out, strings.NewReader(in), p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`document 1 (Pod shop/p): sidelog.io/tail: /var/log/app/*.log was on no volume of container "app": added emptyDir volume "sidelog-logs-0" at /var/log/app to it and to the agent; files the image had in /var/log/app are hidden`}
	var got []string
	for _, w := range ws {
		got = append(got, w.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if !strings.Contains(out.String(), "sidelog-logs-0") {
		t.Errorf("output lacks the added volume:\n%s", out.String())
	}
}

// TestExampleDeployment: the example of the README and `make demo` is injected as it says.
func TestExampleDeployment(t *testing.T) {
	in, err := os.ReadFile("../../examples/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ws, err := Inject(&out, bytes.NewReader(in), nil)
	if err != nil || len(ws) > 0 {
		t.Fatalf("warnings %v, error %v", ws, err)
	}
	for _, want := range []string{"name: sidelog-agent", `"multiline":{"preset":"java"}`, "fluentd-1.logging:24224", "restartPolicy: Always"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
