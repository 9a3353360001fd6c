package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRunWebhookFlags: values of the webhook's flags that it would misread are refused before
// it connects to anything.
func TestRunWebhookFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"webhook", "--namespace=x", "--failure-policy=Never"}, `--failure-policy: want "Fail" or "Ignore", got "Never"`},
		{[]string{"webhook", "--namespace=x", "--shutdown-delay=soon"}, `invalid value "soon" for flag -shutdown-delay`},
		{[]string{"webhook", "--namespace=x", "--metrics-secure=maybe"}, `invalid boolean value "maybe" for -metrics-secure`},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tt.args, strings.NewReader(""), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("sidelog %s: exit status %d, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, stderr.String(), tt.want)
		}
	}
}
