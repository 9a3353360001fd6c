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
	nsFile := fs.String("namespace", "", "a manifest of the Namespace the objects go to, whose sidelog.io/ annotations are the namespace defaults\n(objects that name no namespace go to it; a Namespace in the input wins over it)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: sidelog inject -f FILE|- [--policy FILE] [--namespace FILE]\n\n"+
			"Prints the manifests with the log agent added to every Pod and pod template (Deployment,\n"+
			"StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, and other kinds whose spec.template is one)\n"+
			"that asks for it with sidelog.io/ annotations; everything else is printed unchanged, in the\n"+
			"same order and format: multi-document YAML, a List, JSON, a stream of JSON objects.\n"+
			"Notes, warnings and errors go to standard error; if any document has a mistake, nothing\n"+
			"is printed and the exit status is 1.\n\n")
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

	opts := manifest.Options{Policy: policy, Filename: *file}
	if *nsFile != "" {
		f, err := os.Open(*nsFile)
		if err != nil {
			return fmt.Errorf("reading the namespace: %w", err)
		}
		defer f.Close()
		if opts.Namespaces, err = manifest.ReadNamespaces(f, *nsFile); err != nil {
			return err
		}
	}

	in := stdin
	if *file == "-" {
		opts.Filename = "stdin"
	} else {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	warnings, err := manifest.Inject(stdout, in, opts)
	for _, w := range warnings {
		if w.Note {
			fmt.Fprintf(stderr, "Note: %s\n", w)
		} else {
			fmt.Fprintf(stderr, "Warning: %s\n", w)
		}
	}
	return err
}
