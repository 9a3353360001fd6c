package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// cpuSet is the kernel's cpu_set_t: one bit per CPU, 1024 CPUs.
type cpuSet [16]uint64

func (s *cpuSet) set(cpu int)      { s[cpu/64] |= 1 << (cpu % 64) }
func (s *cpuSet) has(cpu int) bool { return s[cpu/64]&(1<<(cpu%64)) != 0 }

func getAffinity(tid int) (cpuSet, error) {
	var s cpuSet
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), unsafe.Sizeof(s), uintptr(unsafe.Pointer(&s)))
	if errno != 0 {
		return s, fmt.Errorf("sched_getaffinity: %w", errno)
	}
	return s, nil
}

func setAffinity(tid int, s *cpuSet) error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(*s), uintptr(unsafe.Pointer(s)))
	if errno != 0 {
		return fmt.Errorf("sched_setaffinity: %w", errno)
	}
	return nil
}

// cpuPlan says where the measured child processes and this process (the receivers) run.
type cpuPlan struct {
	child  int // -1: not pinned (a single CPU)
	rest   []int
	parent cpuSet
}

// placeCPUs gives the first CPU this process may use to the measured children and moves every
// thread of this process to the others, so that the receiver does not share the agent's core.
// Threads made later inherit the mask of the thread that makes them.
func placeCPUs() (cpuPlan, error) {
	all, err := getAffinity(0)
	if err != nil {
		return cpuPlan{}, err
	}
	p := cpuPlan{child: -1}
	var cpus []int
	for c := range len(all) * 64 {
		if all.has(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		p.rest = cpus
		return p, nil
	}
	p.child, p.rest = cpus[0], cpus[1:]
	for _, c := range p.rest {
		p.parent.set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return cpuPlan{}, fmt.Errorf("listing this process's threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that exited meanwhile is no matter.
		if err := setAffinity(tid, &p.parent); err != nil && !errors.Is(err, syscall.ESRCH) {
			return cpuPlan{}, fmt.Errorf("pinning thread %d: %w", tid, err)
		}
	}
	return p, nil
}

// start starts cmd on the child CPU and returns when it started. The child inherits the affinity
// of the thread that forks it, so this goroutine's thread is pinned for the fork and moved back
// afterwards: every thread of the child, the Go runtime's included, is on that CPU from its start.
func (p cpuPlan) start(cmd *exec.Cmd) (time.Time, error) {
	if p.child < 0 {
		return time.Now(), cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var one cpuSet
	one.set(p.child)
	if err := setAffinity(0, &one); err != nil {
		return time.Time{}, err
	}
	started := time.Now()
	err := cmd.Start()
	if rerr := setAffinity(0, &p.parent); rerr != nil && err == nil {
		err = rerr
	}
	return started, err
}

func (p cpuPlan) String() string {
	if p.child < 0 {
		return "not pinned: one CPU only"
	}
	return fmt.Sprintf("measured process on CPU %d, receiver on CPU %v", p.child, p.rest)
}

// peakRSS returns the peak resident set of process pid (VmHWM), in bytes. The rusage of an exited
// child cannot tell it: Linux carries the parent's peak over into a child that was forked with
// vfork, as Go forks, so a small child would report this harness's size.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM of process %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// schedstat returns how long the threads of process pid have run, and how long they waited on a
// run queue: ready to run, but another task had the CPU (the first two fields of schedstat, in
// nanoseconds, so finer than rusage's clock ticks).
func schedstat(pid int) (run, waited time.Duration, err error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // exited meanwhile
		}
		var r, w int64
		if _, err := fmt.Sscan(string(b), &r, &w); err != nil {
			return 0, 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		run += time.Duration(r)
		waited += time.Duration(w)
	}
	return run, waited, nil
}
