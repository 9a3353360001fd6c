package manifest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidelog/sidelog/injector"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// inputs are the golden inputs: testdata/NAME.in.yaml or .json, whose output is
// NAME.out.yaml (.json) and whose notes and warnings are NAME.stderr. NAME.ns.yaml, if there
// is one, is given as --namespace.
func inputs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.in.*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs in testdata: %v", err)
	}
	return files
}

// golden runs Inject on a golden input as sidelog inject -f would.
func golden(t *testing.T, file string, in []byte) (string, []Warning, error) {
	t.Helper()
	opts := Options{Filename: filepath.Base(file)}
	base, _, _ := strings.Cut(file, ".in.")
	if f, err := os.Open(base + ".ns.yaml"); err == nil {
		defer f.Close()
		if opts.Namespaces, err = ReadNamespaces(f, filepath.Base(base)+".ns.yaml"); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	ws, err := Inject(&out, bytes.NewReader(in), opts)
	return out.String(), ws, err
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if got == "" {
			os.Remove(path)
			return
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil && !(os.IsNotExist(err) && got == "") {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func TestInjectGolden(t *testing.T) {
	for _, file := range inputs(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out, ws, err := golden(t, file, in)
			if err != nil {
				t.Fatal(err)
			}
			base, ext, _ := strings.Cut(file, ".in.")
			checkGolden(t, base+".out."+ext, out)
			var stderr strings.Builder
			for _, w := range ws {
				if w.Note {
					stderr.WriteString("Note: ")
				} else {
					stderr.WriteString("Warning: ")
				}
				stderr.WriteString(w.String() + "\n")
			}
			checkGolden(t, base+".stderr", stderr.String())
		})
	}
}

// TestInjectIdempotent: injecting the output again writes it byte for byte, and warns of
// nothing new.
func TestInjectIdempotent(t *testing.T) {
	for _, file := range inputs(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			once, _, err := golden(t, file, in)
			if err != nil {
				t.Fatal(err)
			}
			twice, _, err := golden(t, file, []byte(once))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(once, twice); diff != "" {
				t.Errorf("second pass changed the output (-once +twice):\n%s", diff)
			}
		})
	}
}

func TestInjectPassesThrough(t *testing.T) {
	for _, in := range []string{
		"apiVersion: v1\nkind: ConfigMap   # keep me\nmetadata: {name: x}\ndata: {a: b}\n",
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {sidelog.io/inject: \"false\", sidelog.io/tail: /x}\nspec:\n  containers: [{name: a, image: b}]\n",
		"- just\n- a list\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
		"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
		"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}\n{\"apiVersion\":\"v1\",\"kind\":\"Secret\"}\n",
		"# a comment\n---\n{\"kind\": \"Service\"}\n---\nkind: Service\n",
		"a: 1\n--- !tag\nb: 2\n",
	} {
		var out bytes.Buffer
		ws, err := Inject(&out, strings.NewReader(in), Options{})
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

const threeMistakes = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      annotations:
        sidelog.io/tail: /logs/*.log
        sidelog.io/upstream-tls: true
        sidelog.io/multiline: pyton
        sidelog.io/parsre: json
    spec:
      containers: [{name: app, image: x}]
`

func TestInjectErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{"no manifests in the input: it is empty"}},
		{"only comments", "# nothing\n---\n", []string{"no manifests in the input: only comments and separators"}},
		{"unknown container", refusedDeployment, []string{
			`line 7: document 1 (Deployment shop/web): sidelog.io/tail.api: the pod has no app container "api"; its app containers are app`}},
		{"legacy CronJob", legacyCronJob, []string{
			`line 9: document 1 (CronJob nightly): sidelog.io/sidecar-mode: legacy mode adds the agent as a regular container, which keeps running after the app finishes, so Job "nightly" would never complete; set sidelog.io/sidecar-mode: native (needs Kubernetes 1.29 or later)`}},
		{"every refused document is named", refusedDeployment + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n" + legacyCronJob, []string{
			`line 7: document 1 (Deployment shop/web): sidelog.io/tail.api:`,
			`line 23: document 3 (CronJob nightly): sidelog.io/sidecar-mode:`}},
		{"every mistake of a document", threeMistakes, []string{
			`line 9: document 1 (Deployment shop/web): sidelog.io/upstream-tls: the value true is a boolean in YAML; annotation values are strings: quote it, sidelog.io/upstream-tls: "true"`,
			`line 10: document 1 (Deployment shop/web): sidelog.io/multiline: unknown preset "pyton" (did you mean python?)`,
			`line 11: document 1 (Deployment shop/web): sidelog.io/parsre: unknown annotation; did you mean sidelog.io/parser?`}},
		{"unquoted false", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidelog.io/tail: /x/*.log\n    sidelog.io/inject: false\nspec: {containers: [{name: a}]}\n", []string{
			`line 7: document 1 (Pod p): sidelog.io/inject: the value false is a boolean in YAML; annotation values are strings: quote it, sidelog.io/inject: "false"`}},
		{"unquoted number", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {sidelog.io/tail: /x/*.log, sidelog.io/metrics-port: 9000, sidelog.io/upstream: a:1}\nspec: {containers: [{name: a, volumeMounts: [{name: v, mountPath: /x}]}], volumes: [{name: v, emptyDir: {}}]}\n", []string{
			`line 5: document 1 (Pod p): sidelog.io/metrics-port: the value 9000 is a number in YAML; annotation values are strings: quote it, sidelog.io/metrics-port: "9000"`}},
		{"JSON boolean", `{"apiVersion":"v1","kind":"ConfigMap"}` + "\n" + `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"sidelog.io/tail":"/x/*.log","sidelog.io/inject":false}},"spec":{"containers":[{"name":"a"}]}}` + "\n", []string{
			`line 2: document 2 (Pod p): sidelog.io/inject: the value false is a boolean; annotation values are strings: quote it, "sidelog.io/inject": "false"`}},
		{"bad YAML in the middle", "a: 1\n---\nb: 2\n---\nc: [\n---\nd: 4\n", []string{"line 5: document 3: parsing YAML:"}},
		{"bad JSON in a stream", "{\"a\": 1}\n{\"b\": }\n", []string{"line 2: document 2: parsing JSON: invalid character '}' looking for beginning of value"}},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(refusedDeployment), "\n", "\n  ") + "\n", []string{
			`line 10: document 1, item 1 (Deployment shop/web): sidelog.io/tail.api:`}},
		{"namespace annotation", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations: {sidelog.io/parser: logfmt}\n---\n" + strings.Replace(refusedDeployment, "tail.api", "tail.app", 1), []string{
			`line 12: document 2 (Deployment shop/web): namespace annotation sidelog.io/parser: got "logfmt", want "none" or "json" (at line 5)`}},
		{"namespace unknown", strings.NewReplacer("tail.api", "tail", `, sidelog.io/upstream: "a:1"`, "").Replace(refusedDeployment), []string{
			`line 7: document 1 (Deployment shop/web): sidelog.io/upstream: no upstream: set it on the pod or its namespace to the aggregator's host:port, or set upstream in the cluster policy (sidelog inject takes the annotations of namespace shop from a Namespace document in the input or from --namespace FILE, and has neither)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := Inject(&out, strings.NewReader(tt.in), Options{})
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
	ws, err := Inject(&out, strings.NewReader(in), Options{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`line 1: document 1 (Pod shop/p): sidelog.io/tail: /var/log/app/*.log was on no volume of container "app": added emptyDir volume "sidelog-logs-0" at /var/log/app to it and to the agent; files the image had in /var/log/app are hidden`}
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
	ws, err := Inject(&out, bytes.NewReader(in), Options{})
	if err != nil || len(ws) > 0 {
		t.Fatalf("warnings %v, error %v", ws, err)
	}
	for _, want := range []string{"name: sidelog-agent", `"multiline":{"preset":"java"}`, "fluentd-1.logging:24224", "restartPolicy: Always"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestInjectNamespaceConsistent: a refusal that says to set an option on the namespace is
// followed, offline, by setting it there: in a Namespace document of the input or in
// --namespace.
func TestInjectNamespaceConsistent(t *testing.T) {
	p, err := injector.ParsePolicy([]byte("allowPodOverride: []"))
	if err != nil {
		t.Fatal(err)
	}
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: shop\n  annotations: {sidelog.io/tail: /logs/*.log, sidelog.io/upstream: \"a:1\"}\nspec:\n  securityContext: {runAsUser: 1000}\n  containers: [{name: app, image: b, volumeMounts: [{name: l, mountPath: /logs}]}]\n  volumes: [{name: l, emptyDir: {}}]\n"
	_, err = Inject(new(bytes.Buffer), strings.NewReader(pod), Options{Policy: p})
	want := `line 6: document 1 (Pod shop/p): sidelog.io/upstream: the cluster policy does not let pods set sidelog.io/upstream (allowPodOverride: []); set it on the namespace, or ask the cluster admin to allow it (sidelog inject takes the annotations of namespace shop from a Namespace document in the input or from --namespace FILE, and has neither)`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}

	ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations: {sidelog.io/upstream: \"fluentd.logging:24224\"}\n"
	moved := strings.Replace(pod, `, sidelog.io/upstream: "a:1"`, "", 1)
	nss, err := ReadNamespaces(strings.NewReader(ns), "ns.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]struct {
		in   string
		opts Options
	}{
		"in the input":           {ns + "---\n" + moved, Options{Policy: p}},
		"--namespace":            {moved, Options{Policy: p, Namespaces: nss}},
		"default of --namespace": {strings.Replace(moved, "  namespace: shop\n", "", 1), Options{Policy: p, Namespaces: nss}},
	} {
		var out bytes.Buffer
		if _, err := Inject(&out, strings.NewReader(opts.in), opts.opts); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !strings.Contains(out.String(), `\"servers\":[\"fluentd.logging:24224\"]`) && !strings.Contains(out.String(), `"servers":["fluentd.logging:24224"]`) {
			t.Errorf("%s: the namespace's upstream is not in the output:\n%s", name, out.String())
		}
	}
}

// TestInjectCompletesOlderOutput: a template injected before agents were told their workload
// gets it now, in its configuration alone: not injected anew (same status, no note), and a
// third pass changes nothing.
func TestInjectCompletesOlderOutput(t *testing.T) {
	file := "testdata/workloads.in.yaml"
	in, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	now, _, err := golden(t, file, in)
	if err != nil {
		t.Fatal(err)
	}
	older := owners.ReplaceAllString(now, "")
	if older == now {
		t.Fatal("the output names no owners")
	}
	again, ws, err := golden(t, file, []byte(older))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(now, again); diff != "" {
		t.Errorf("older output injected again (-want +got):\n%s", diff)
	}
	for _, w := range ws {
		if strings.Contains(w.Message, "injected anew") || strings.Contains(w.Message, injector.AnnotationStatus) {
			t.Errorf("the workload alone made it inject anew: %s", w)
		}
	}
}

var owners = regexp.MustCompile(`,"owners":\[[^\]]*\]`)
