package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestRunReceipt(t *testing.T) {
	in, err := os.ReadFile("../../internal/receipts/testdata/job-pods.json")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"receipt"}, bytes.NewReader(in), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "POD ") || !strings.Contains(out.String(), "shop/report-1-abcde  app") {
		t.Errorf("output:\n%s", out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"receipt", "pod-1"}, strings.NewReader(""), &out, &errOut); code != 2 {
		t.Errorf("an argument: exit %d, want 2 (%s)", code, errOut.String())
	}
	if code := run([]string{"receipt"}, strings.NewReader(`{"kind":"Job","metadata":{"name":"j"}}`), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "job-name=j") {
		t.Errorf("a Job: exit %d, want 1 and how to get its pods (%s)", code, errOut.String())
	}
}
