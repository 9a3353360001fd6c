//go:build unix && !linux

package main

import (
	"errors"
	"os/exec"
	"time"
)

// cpuPlan does nothing where sched_setaffinity does not exist: the processes are not pinned.
type cpuPlan struct{}

func placeCPUs() (cpuPlan, error) { return cpuPlan{}, nil }

func (cpuPlan) start(cmd *exec.Cmd) (time.Time, error) { return time.Now(), cmd.Start() }

func (cpuPlan) String() string { return "not pinned on this system" }

// peakRSS is not known while the process runs here; usage takes the rusage of the exited process.
func peakRSS(int) (int64, error) { return 0, errors.ErrUnsupported }

// schedstat is not known here.
func schedstat(int) (run, waited time.Duration, err error) { return 0, 0, errors.ErrUnsupported }
