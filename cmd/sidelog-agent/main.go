// Command sidelog-agent tails a pod's log files and forwards their records to a Fluentd or Fluent
// Bit aggregator. The injector adds it to a pod as a native sidecar; see sidecar/agent.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/sidelog/sidelog/sidecar/agent"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sidelog-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) (err error) {
	var ran bool
	// First thing: a short Job's app can exit, and the kubelet send SIGTERM, while the agent is
	// still starting; the default action would kill it before it read a line.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet("sidelog-agent", flag.ContinueOnError)
	configFile := fs.String("config", "", "read the configuration from this file instead of $"+config.Env)
	stateDir := fs.String("state-dir", "/var/lib/sidelog", "directory for checkpoints (a pod-local emptyDir)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	probe := fs.Bool("probe", false, "ask the agent running in this container for its /healthz and exit 0 if it is healthy, 1 if not (the injected startup probe)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version)
		return nil
	}
	// The startup probe runs this binary in the same container: only the agent writes the receipt.
	receiptFile := os.Getenv(config.EnvReceiptFile)
	receiptMax, _ := strconv.Atoi(os.Getenv(config.EnvReceiptMaxBytes)) // not a number: the default
	if receiptFile != "" && !*probe {
		defer func() {
			// Run writes its own; this one says why the agent never ran.
			if err != nil && !ran {
				if werr := receipt.WriteFile(receiptFile, receipt.Receipt{Agent: version, Error: err.Error()}, receiptMax); werr != nil {
					fmt.Fprintln(os.Stderr, "sidelog-agent:", werr)
				}
			}
		}()
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	agent.SetMemoryLimit(os.Getenv, log)

	var src io.Reader
	if *configFile != "" {
		f, err := os.Open(*configFile)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		defer f.Close()
		src = f
	} else {
		doc := os.Getenv(config.Env)
		if doc == "" {
			return fmt.Errorf("no configuration: set $%s or --config", config.Env)
		}
		src = strings.NewReader(doc)
	}
	cfg, err := config.Decode(src)
	if err != nil {
		return err
	}
	if *probe {
		return agent.Probe(ctx, cfg.MetricsAddr, *stateDir)
	}
	pod, err := agent.PodFromEnv(os.Getenv, cfg.LabelsFile)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Options{StateDir: *stateDir, Pod: pod, Logger: log,
		ReceiptFile: receiptFile, ReceiptMaxBytes: receiptMax, Version: version})
	if err != nil {
		return err
	}
	log.Info("sidelog-agent starting", "version", version, "inputs", len(cfg.Inputs), "upstream", cfg.Upstream.Servers)
	ran = true
	return a.Run(ctx)
}
