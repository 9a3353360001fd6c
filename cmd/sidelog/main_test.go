package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const refused = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      annotations: {sidelog.io/tial.app: /logs/*.log}
    spec:
      containers: [{name: app, image: x}]
`

const onNoVolume = `apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {sidelog.io/tail: /var/log/app/*.log, sidelog.io/upstream: "fluentd:24224"}
spec:
  containers: [{name: app, image: x}]
`

const jsonStream = `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"sidelog.io/tail":"/logs/*.log","sidelog.io/upstream":"fluentd:24224"}},"spec":{"containers":[{"name":"app","image":"x","volumeMounts":[{"name":"l","mountPath":"/logs"}]}],"volumes":[{"name":"l","emptyDir":{}}]}}
`

const noUpstream = `apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {sidelog.io/tail: /logs/*.log}
spec:
  containers: [{name: app, image: x, volumeMounts: [{name: l, mountPath: /logs}]}]
  volumes: [{name: l, emptyDir: {}}]
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	emptyDirPolicy := writeFile(t, "policy.yaml", "missingVolume: emptyDir\n")
	badPolicy := writeFile(t, "bad.yaml", "missingVolumes: emptyDir\n")
	refusedFile := writeFile(t, "refused.yaml", refused)
	nsFile := writeFile(t, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations:\n    sidelog.io/upstream: fluentd.logging:24224\n")
	tests := []struct {
		name       string
		args       []string
		stdin      string
		code       int
		stdout     []string // substrings it must contain
		stderr     []string
		exactOut   string
		noStdout   bool
		stderrNone bool
	}{
		{name: "no command", args: nil, code: 2, noStdout: true, stderr: []string{"Usage:"}},
		{name: "unknown command", args: []string{"injct"}, code: 2, noStdout: true, stderr: []string{`sidelog: unknown command "injct"`, "Usage:"}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"sidelog inject -f FILE|-"}, stderrNone: true},
		{name: "version", args: []string{"version"}, code: 0, exactOut: "sidelog dev\n", stderrNone: true},
		{name: "version with arguments", args: []string{"version", "x"}, code: 2, noStdout: true, stderr: []string{"sidelog version: takes no arguments"}},
		{name: "inject without -f", args: []string{"inject"}, code: 2, noStdout: true, stderr: []string{"sidelog inject: -f FILE or -f - (standard input) is required"}},
		{name: "inject with a stray argument", args: []string{"inject", "-f", "x", "y"}, code: 2, noStdout: true, stderr: []string{`unexpected arguments ["y"]`}},
		{name: "inject with a bad flag", args: []string{"inject", "--fil", "x"}, code: 2, noStdout: true, stderr: []string{"flag provided but not defined: -fil"}},
		{name: "inject help", args: []string{"inject", "-h"}, code: 0, noStdout: true, stderr: []string{"Usage: sidelog inject"}},
		{name: "inject the example", args: []string{"inject", "-f", "../../examples/deployment.yaml"}, code: 0,
			stdout: []string{"kind: Deployment", "name: sidelog-agent", "restartPolicy: Always"}, stderrNone: true},
		{name: "inject from stdin", args: []string{"inject", "-f", "-"}, stdin: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", code: 0,
			exactOut: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", stderrNone: true},
		{name: "inject a refused manifest", args: []string{"inject", "-f", refusedFile}, code: 1, noStdout: true,
			stderr: []string{"sidelog inject: " + refusedFile + ":7: document 1 (Deployment shop/web): sidelog.io/tial.app: unknown annotation; did you mean sidelog.io/tail.app?\n"}},
		{name: "inject a missing file", args: []string{"inject", "-f", "/no/such/file.yaml"}, code: 1, noStdout: true, stderr: []string{"sidelog inject: open /no/such/file.yaml"}},
		{name: "inject with a bad policy", args: []string{"inject", "--policy", badPolicy, "-f", "-"}, code: 1, noStdout: true,
			stderr: []string{"cluster policy field missingVolumes: unknown field; did you mean missingVolume?"}},
		{name: "inject with warnings", args: []string{"inject", "-policy", emptyDirPolicy, "-f", "-"}, stdin: onNoVolume, code: 0,
			stdout: []string{"sidelog-logs-0"}, stderr: []string{`Warning: stdin:1: document 1 (Pod p): sidelog.io/tail: /var/log/app/*.log was on no volume of container "app"`}},
		{name: "inject nothing", args: []string{"inject", "-f", "-"}, stdin: "\n", code: 1, noStdout: true,
			stderr: []string{"sidelog inject: stdin: no manifests in the input: it is empty\n"}},
		{name: "inject a JSON stream", args: []string{"inject", "-f", "-"}, stdin: jsonStream, code: 0,
			stdout: []string{`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}` + "\n", `"name":"sidelog-agent"`}},
		{name: "inject with a namespace", args: []string{"inject", "--namespace", nsFile, "-f", "-"}, stdin: noUpstream, code: 0,
			stdout: []string{"fluentd.logging:24224"}},
		{name: "inject without the namespace", args: []string{"inject", "-f", "-"}, stdin: noUpstream, code: 1, noStdout: true,
			stderr: []string{"sidelog inject: stdin:5: document 1 (Pod p): sidelog.io/upstream: no upstream: set it on the pod or its namespace to the aggregator's host:port, or set upstream in the cluster policy (the object names no namespace; sidelog inject takes namespace annotations from --namespace FILE, a Namespace manifest)\n"}},
		{name: "inject with a namespace that is not", args: []string{"inject", "--namespace", refusedFile, "-f", "-"}, stdin: noUpstream, code: 1, noStdout: true,
			stderr: []string{"refused.yaml:1: document 1: want a Namespace (apiVersion: v1, kind: Namespace)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit status %d, want %d (stderr: %s)", code, tt.code, stderr.String())
			}
			if tt.exactOut != "" && stdout.String() != tt.exactOut {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.exactOut)
			}
			if tt.noStdout && stdout.Len() > 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if tt.stderrNone && stderr.Len() > 0 {
				t.Errorf("stderr %q, want nothing", stderr.String())
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
		})
	}
}
