package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sidelog/sidelog/internal/receipts"
)

func runReceipt(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sidelog receipt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kubectl get pod NAME -o json | sidelog receipt\n"+
			"       kubectl get pods -l batch.kubernetes.io/job-name=JOB -o json | sidelog receipt\n\n"+
			"Prints the delivery receipt that the log agent of each pod wrote when it exited (its\n"+
			"termination message): per app container, the lines and bytes acknowledged upstream, the\n"+
			"bytes still pending, what was dropped and why, and whether the drain finished. Pods whose\n"+
			"agent has not exited yet, or did not write one, get a line that says so.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q (the pods come on standard input)", fs.Args())}
	}
	pods, err := receipts.ReadPods(stdin)
	if err != nil {
		return err
	}
	return receipts.Write(stdout, receipts.Rows(pods))
}
