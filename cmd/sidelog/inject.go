package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/injector/manifest"
)

func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sidelog inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "the manifests: a YAML file of one or more documents, or - for standard input")
	policyFile := fs.String("policy", "", "the cluster policy, a YAML file (default: the built-in policy)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: sidelog inject -f FILE|- [--policy FILE]\n\n"+
			"Prints the manifests with the log agent added to every Pod and pod template (Deployment,\n"+
			"StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ...) that asks for it with sidelog.io/\n"+
			"annotations; everything else is printed unchanged. Warnings and errors go to standard error.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q (the manifests are given with -f)", fs.Args())}
	}
	if *file == "" {
		return usageError{errors.New("-f FILE or -f - (standard input) is required")}
	}

	policy := injector.DefaultPolicy()
	if *policyFile != "" {
		data, err := os.ReadFile(*policyFile)
		if err != nil {
			return fmt.Errorf("reading the policy: %w", err)
		}
		if policy, err = injector.ParsePolicy(data); err != nil {
			return fmt.Errorf("%s: %w", *policyFile, err)
		}
	}

	in := stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	warnings, err := manifest.Inject(stdout, in, policy)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "Warning: %s\n", w)
	}
	return err
}
