// Command sidelog is the cluster side of sidelog: the mutating admission webhook that adds the
// log agent to pods, and the same mutation offline for manifests.
//
//	sidelog inject -f FILE|- [--policy FILE]
//	sidelog webhook [flags]
//	sidelog receipt < kubectl get pod NAME -o json
//	sidelog version
//
// Exit status: 0 on success, 1 when the command failed (a refused manifest, a bad policy, ...),
// 2 for a command line that cannot be understood.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `Usage:
  sidelog inject -f FILE|- [--policy FILE]  add the log agent to the pods and pod templates of manifests
  sidelog webhook [flags]                 serve the mutating admission webhook
  sidelog receipt                         print the log agents' delivery receipts of the pods
                                          that kubectl get -o json prints on standard input
  sidelog version                         print the version

Run "sidelog COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError is a command line that cannot be understood; it exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "inject":
		err = runInject(args, stdin, stdout, stderr)
	case "webhook":
		err = runWebhook(args)
	case "receipt":
		err = runReceipt(args, stdin, stdout, stderr)
	case "version":
		if len(args) > 0 {
			err = usageError{fmt.Errorf("takes no arguments, got %q", args)}
			break
		}
		fmt.Fprintln(stdout, "sidelog", version)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sidelog: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "sidelog %s: %v\n", cmd, err)
		return 2
	default:
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "sidelog %s: %s\n", cmd, line)
		}
		return 1
	}
}
