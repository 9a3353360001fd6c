package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/fluentforwardreceiver"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/internal/localpod"
)

// These tests run the agent the injector configured, as a process (the receiver and
// fluent-logger-golang cannot share a binary, and a kubelet runs it as a process anyway), against
// the OpenTelemetry Collector's fluentforwardreceiver: a forward-protocol server no one here wrote.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary returns the path of a sidelog binary ("sidelog" or "sidelog-agent"): $SIDELOG_BIN's when
// set (make e2e sets it after make build), else one built once for this test run as make build
// builds it (static, stripped).
func binary(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("SIDELOG_BIN"); dir != "" {
		return filepath.Join(dir, name)
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sidelog-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, cmd := range []string{"sidelog", "sidelog-agent"} {
			b := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(binDir, cmd), "./cmd/"+cmd)
			b.Dir = ".."
			b.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := b.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// received is one log record as the OpenTelemetry receiver decoded it.
type received struct {
	Tag, Log, File string
	Time           time.Time
	Kubernetes     map[string]any
	Attributes     map[string]any
}

type otelReceiver struct {
	Addr string
	sink *consumertest.LogsSink
}

// startReceiver starts the OpenTelemetry fluentforwardreceiver in this process. It acknowledges a
// chunk only after its records were accepted by the sink.
func startReceiver(t testing.TB) *otelReceiver {
	t.Helper()
	f := fluentforwardreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*fluentforwardreceiver.Config)
	cfg.ListenAddress = freeAddr(t)
	sink := new(consumertest.LogsSink)
	r, err := f.CreateLogs(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return &otelReceiver{Addr: cfg.ListenAddress, sink: sink}
}

func (r *otelReceiver) records() []received {
	var out []received
	for _, logs := range r.sink.AllLogs() {
		for i := range logs.ResourceLogs().Len() {
			sl := logs.ResourceLogs().At(i).ScopeLogs()
			for j := range sl.Len() {
				lrs := sl.At(j).LogRecords()
				for k := range lrs.Len() {
					lr := lrs.At(k)
					attrs := lr.Attributes().AsRaw()
					rec := received{Log: lr.Body().AsString(), Time: lr.Timestamp().AsTime(), Attributes: attrs}
					rec.Tag, _ = attrs["fluent.tag"].(string)
					rec.File, _ = attrs["file"].(string)
					rec.Kubernetes, _ = attrs["kubernetes"].(map[string]any)
					out = append(out, rec)
				}
			}
		}
	}
	return out
}

func (r *otelReceiver) wait(t testing.TB, n int) []received {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("%d records at the receiver", n), func() error {
		if got := r.sink.LogRecordCount(); got < n {
			return fmt.Errorf("%d records", got)
		}
		return nil
	})
	return r.records()
}

// agentProcess is the injected agent container running as a local process.
type agentProcess struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan error
	// terminationMessage is the file that stands for the container's terminationMessagePath.
	terminationMessage string
}

// runInjectedAgent starts the agent container of an injected pod as a kubelet would: its command,
// args and environment, downward-API values from pod (use the pod the API server returned, so the
// UID is real), and its volumes as directories: volumeDirs maps a volume name to a directory,
// other volumes get new ones.
func runInjectedAgent(t testing.TB, pod *corev1.Pod, volumeDirs map[string]string) *agentProcess {
	t.Helper()
	opts := localpod.Options{
		Binaries:   map[string]string{"/sidelog-agent": binary(t, "sidelog-agent")},
		VolumeDirs: volumeDirs,
		ScratchDir: t.TempDir(),
	}
	cmd, err := localpod.Command(pod, injector.AgentContainer, opts)
	if err != nil {
		t.Fatal(err)
	}
	p := &agentProcess{cmd: cmd, output: new(syncBuffer), done: make(chan error, 1),
		terminationMessage: localpod.TerminationMessageFile(opts, injector.AgentContainer)}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	// The kubelet starts the app containers once a native sidecar's startup probe passed.
	c, err := localpod.Container(pod, injector.AgentContainer)
	if err != nil {
		t.Fatal(err)
	}
	if probe := c.StartupProbe; probe != nil && probe.Exec != nil {
		// The probe runs in the agent's container: its environment and its volumes.
		probePod := pod.DeepCopy()
		pc, err := localpod.Container(probePod, injector.AgentContainer)
		if err != nil {
			t.Fatal(err)
		}
		pc.Command, pc.Args = probe.Exec.Command, nil
		eventually(t, 30*time.Second, "the agent's startup probe "+strings.Join(probe.Exec.Command, " "), func() error {
			probeCmd, err := localpod.Command(probePod, injector.AgentContainer, opts)
			if err != nil {
				return err
			}
			if out, err := probeCmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	} else if probe != nil && probe.HTTPGet != nil {
		var port int32
		for _, cp := range c.Ports {
			if cp.Name == probe.HTTPGet.Port.String() || cp.ContainerPort == probe.HTTPGet.Port.IntVal {
				port = cp.ContainerPort
			}
		}
		url := fmt.Sprintf("http://127.0.0.1:%d%s", port, probe.HTTPGet.Path)
		eventually(t, 30*time.Second, "the agent's startup probe "+url, func() error {
			resp, err := http.Get(url)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %s", resp.Status)
			}
			return nil
		})
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		p.done <- nil
		if t.Failed() {
			t.Logf("agent output:\n%s", p.output)
		}
	})
	return p
}

// stop sends SIGTERM, as the kubelet does to a native sidecar once the app containers ended, and
// returns the exit error.
func (p *agentProcess) stop(t testing.TB) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(time.Minute):
		t.Fatalf("agent still running a minute after SIGTERM\n%s", p.output)
		return nil
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logPod is a pod whose app container writes to an emptyDir mounted at dir, annotated to ship it.
func logPod(dir string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "checkout-5d8f7-abcde", Namespace: "shop", UID: "6f1c9c1e-8d0e-4c1e-9a53-7b0d3c1f2a44",
			Labels: map[string]string{"app": "checkout", "tier": "web"}, Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			NodeName: "virtual-kubelet-eci",
			Containers: []corev1.Container{{
				Name: "app", Image: "example/checkout",
				VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: dir}},
			}},
			Volumes: []corev1.Volume{{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// inject runs the injector as the webhook would, with a policy whose agent metrics port is free
// on this machine (a pod has its own network namespace; these processes share one).
func inject(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	return injectWith(t, pod, "")
}

// injectWith is inject with more of the cluster policy (YAML fields).
func injectWith(t testing.TB, pod *corev1.Pod, policyFields string) *corev1.Pod {
	t.Helper()
	_, port := splitHostPort(t, freeAddr(t))
	policy, err := injector.ParsePolicy(fmt.Appendf(nil, "metricsPort: %d\n%s", port, policyFields))
	if err != nil {
		t.Fatal(err)
	}
	out, outcome, err := injector.Inject(pod, nil, policy)
	if err != nil || !outcome.Injected {
		t.Fatalf("Inject = %v, %+v", err, outcome)
	}
	return out
}

func appendFile(t testing.TB, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

func numbered(prefix string, from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s %06d %s", prefix, i, strings.Repeat("x", i%97)))
	}
	return out
}

// javaTrace is one record of the java multiline preset: a log line and its stack trace.
var javaTrace = strings.Join([]string{
	"2026-11-25 10:00:03.120 ERROR [http-nio-8080-exec-4] shop.Checkout - payment failed",
	"java.lang.IllegalStateException: card declined",
	"\tat shop.Payment.charge(Payment.java:88)",
	"\tat shop.Checkout.pay(Checkout.java:31)",
	"Caused by: java.net.SocketTimeoutException: Read timed out",
	"\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)",
	"\t... 42 more",
}, "\n")

// writeThroughRotations is an app writing plain lines and a Java stack trace to app (tailed with
// the java multiline preset) while its log is rotated by rename-and-create, by copytruncate and
// by delete-and-create. Between steps it waits for the agent to catch up, as the hours between
// real rotations would. It returns the records that must arrive from app.
func writeThroughRotations(t testing.TB, recv *otelReceiver, app string) []string {
	t.Helper()
	base := recv.sink.LogRecordCount()
	var want []string
	write := func(lines ...string) {
		appendFile(t, app, lines...)
		want = append(want, lines...)
	}
	write(numbered("start", 0, 1000)...)
	recv.wait(t, base+1000) // rotations come after the agent found the file, as in life

	write(javaTrace)
	write(numbered("before rename", 0, 2000)...)
	// logrotate's default: rename, then the app reopens a new file.
	if err := os.Rename(app, app+".1"); err != nil {
		t.Fatal(err)
	}
	write(numbered("after rename", 0, 2000)...)
	recv.wait(t, base+len(want)-1) // all but the last record, which waits for its flush timeout

	// copytruncate: copy, then truncate in place; the app keeps its O_APPEND descriptor.
	copyFile(t, app, app+".2")
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	write(numbered("after truncate", 0, 2000)...)
	recv.wait(t, base+len(want)-1)

	// delete and create.
	if err := os.Remove(app); err != nil {
		t.Fatal(err)
	}
	write(numbered("after delete", 0, 2000)...)
	return want
}

// TestAgentShipsEverythingToTheOpenTelemetryReceiver writes plain lines, Java stack traces and
// JSON, rotates the file in all three ways while the agent runs, and checks that every line
// arrives once, exactly as written, with the pod's identity, and that SIGTERM drains.
func TestAgentShipsEverythingToTheOpenTelemetryReceiver(t *testing.T) {
	dir := t.TempDir()
	recv := startReceiver(t)
	pod := inject(t, logPod(dir, map[string]string{
		"sidelog.io/tail.app":      dir + "/app.log," + dir + "/audit/*.json",
		"sidelog.io/multiline.app": "java",
		"sidelog.io/upstream":      recv.Addr,
	}))
	agent := runInjectedAgent(t, pod, map[string]string{"logs": dir})

	app := filepath.Join(dir, "app.log")
	want := writeThroughRotations(t, recv, app)

	if err := os.MkdirAll(filepath.Join(dir, "audit"), 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, "audit", "audit.json"), `{"user":"ann","action":"refund"}`)
	recv.wait(t, len(want))

	// The last line, without its newline: the agent ships it when it drains.
	last := "last line before SIGTERM, no newline"
	f, err := os.OpenFile(app, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(last)
	f.Close()
	want = append(want, last)
	if err := agent.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
	}

	got := recv.records()
	var logs []string
	for _, r := range got {
		if r.File == app {
			logs = append(logs, r.Log)
		}
	}
	sort.Strings(want)
	sort.Strings(logs)
	if diff := cmp.Diff(want, logs); diff != "" {
		t.Errorf("app.log records, lost (-) or duplicated (+):\n%s", diff)
	}

	kube := map[string]any{
		"namespace_name": "shop", "pod_name": "checkout-5d8f7-abcde", "pod_id": "6f1c9c1e-8d0e-4c1e-9a53-7b0d3c1f2a44",
		"container_name": "app", "host": "virtual-kubelet-eci",
		"labels": map[string]any{"app": "checkout", "tier": "web", injector.LabelInjected: "true"},
	}
	for i, r := range got {
		if r.Tag != "kube.shop.checkout-5d8f7-abcde.app" {
			t.Fatalf("record %d tag = %q", i, r.Tag)
		}
		if diff := cmp.Diff(kube, r.Kubernetes); diff != "" {
			t.Fatalf("record %d kubernetes (-want +got):\n%s", i, diff)
		}
		if r.Time.IsZero() || time.Since(r.Time) > 10*time.Minute {
			t.Fatalf("record %d time = %v, want the time it was read", i, r.Time)
		}
	}
	// EventTime carries nanoseconds: with thousands of records, some have a sub-microsecond part.
	var subMicro bool
	for _, r := range got {
		subMicro = subMicro || r.Time.Nanosecond()%1000 != 0
	}
	if !subMicro {
		t.Error("no record time has nanoseconds: EventTime lost its precision")
	}
	var audit []received
	for _, r := range got {
		if strings.HasSuffix(r.File, "audit.json") {
			audit = append(audit, r)
		}
	}
	if len(audit) != 1 || audit[0].Log != `{"user":"ann","action":"refund"}` {
		t.Errorf("audit records = %+v, want the one JSON line as written", audit)
	}
}

// TestAgentMessageModes: every message mode the cluster policy can choose reaches the
// OpenTelemetry receiver whole, with acknowledgements.
func TestAgentMessageModes(t *testing.T) {
	for _, mode := range []struct{ name, policy string }{
		{"PackedForward", "upstreamMode: PackedForward"},
		{"CompressedPackedForward", "upstreamMode: PackedForward\nupstreamCompression: gzip"},
		{"Forward", "upstreamMode: Forward"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			recv := startReceiver(t)
			pod := injectWith(t, logPod(dir, map[string]string{
				"sidelog.io/tail.app": dir + "/app.log",
				"sidelog.io/upstream": recv.Addr,
			}), mode.policy+"\n")
			agent := runInjectedAgent(t, pod, map[string]string{"logs": dir})
			want := numbered(mode.name, 0, 3000)
			appendFile(t, filepath.Join(dir, "app.log"), want...)
			recv.wait(t, len(want))
			if err := agent.stop(t); err != nil {
				t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
			}
			var got []string
			for _, r := range recv.records() {
				got = append(got, r.Log)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records, lost (-) or duplicated (+):\n%s", diff)
			}
		})
	}
}

// TestJobPodShipsItsLastLines is a Job's pod in native mode: the app writes and exits, the kubelet
// then sends SIGTERM to the agent, which must ship the last lines and exit 0 so the Job completes.
func TestJobPodShipsItsLastLines(t *testing.T) {
	dir := t.TempDir()
	recv := startReceiver(t)
	pod := logPod(dir, map[string]string{
		"sidelog.io/tail":     dir + "/*.log",
		"sidelog.io/parser":   "json",
		"sidelog.io/upstream": recv.Addr,
	})
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "nightly-report", UID: "j-1"}}
	pod = inject(t, pod)
	agent := runInjectedAgent(t, pod, map[string]string{"logs": dir})

	// The app runs to completion before the agent even looked: a short Job.
	var lines []string
	for i := range 500 {
		lines = append(lines, fmt.Sprintf(`{"level":"info","step":%d,"msg":"report row written"}`, i))
	}
	lines = append(lines, `{"level":"info","msg":"report done","rows":500}`)
	appendFile(t, filepath.Join(dir, "job.log"), lines...)
	if err := agent.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
	}
	got := recv.wait(t, len(lines))
	if len(got) != len(lines) {
		t.Fatalf("got %d records, want %d", len(got), len(lines))
	}
	lastRec := got[len(got)-1]
	if lastRec.Attributes["msg"] != "report done" || fmt.Sprint(lastRec.Attributes["rows"]) != "500" {
		t.Errorf("last record attributes = %v, want the parsed JSON fields of the last line", lastRec.Attributes)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAgentOldFilesOnLogVolume starts an injected agent on a log volume that already holds
// files, as a new pod of a StatefulSet finds its PersistentVolumeClaim: on a PVC (read-from
// auto is tail there, ignore-older set) only what is written after the agent started is
// shipped, and the line's own time stamps a JSON record; on an emptyDir (auto is head) every
// line is, for nothing there was shipped before.
func TestAgentOldFilesOnLogVolume(t *testing.T) {
	for _, tt := range []struct {
		name       string
		source     corev1.VolumeSource
		oldShipped bool
	}{
		{"pvc", corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "checkout-logs-0"}}, false},
		{"emptyDir", corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			recv := startReceiver(t)
			pod := logPod(dir, map[string]string{
				"sidelog.io/tail":         dir + "/*.log",
				"sidelog.io/parser":       "json",
				"sidelog.io/time-key":     "time",
				"sidelog.io/ignore-older": "7d",
				"sidelog.io/upstream":     recv.Addr,
			})
			pod.Spec.Volumes[0].VolumeSource = tt.source
			pod = inject(t, pod)

			// What the volume held before this pod: a log a month old, and one written an hour ago.
			monthOld, hourOld := numbered("shipped by the last pod", 0, 200), numbered("written before the agent started", 0, 300)
			appendFile(t, filepath.Join(dir, "archive.log"), monthOld...)
			appendFile(t, filepath.Join(dir, "current.log"), hourOld...)
			for name, age := range map[string]time.Duration{"archive.log": 30 * 24 * time.Hour, "current.log": time.Hour} {
				when := time.Now().Add(-age)
				if err := os.Chtimes(filepath.Join(dir, name), when, when); err != nil {
					t.Fatal(err)
				}
			}
			agent := runInjectedAgent(t, pod, map[string]string{"logs": dir})
			// The app writes once the agent's first scan has seen the volume (it logs the month-old
			// file it ignores), as it would once the startup probe passed.
			eventually(t, 30*time.Second, "the agent's first scan", func() error {
				if !strings.Contains(agent.output.String(), "archive.log") {
					return fmt.Errorf("no word of archive.log in the agent's log yet")
				}
				return nil
			})

			fresh := numbered("written after the agent started", 0, 100)
			appendFile(t, filepath.Join(dir, "current.log"), fresh...)
			revived := numbered("archive written again", 0, 10)
			appendFile(t, filepath.Join(dir, "archive.log"), revived...)
			stamped := `{"time":"2024-05-01T12:30:45.5Z","msg":"backlog line"}`
			appendFile(t, filepath.Join(dir, "new.log"), stamped)

			var want []string
			if tt.oldShipped {
				// On an emptyDir the files are this pod's own: ignore-older still leaves the
				// month-old file's old content out, everything else is read from its head.
				want = append(want, hourOld...)
			}
			want = append(append(want, fresh...), revived...)
			recv.wait(t, len(want)+1)
			if err := agent.stop(t); err != nil {
				t.Fatalf("agent exit after SIGTERM = %v, want 0", err)
			}
			var got []string
			var backlog *received
			for _, r := range recv.records() {
				if r.Attributes["msg"] == "backlog line" {
					backlog = &r
					continue
				}
				got = append(got, r.Log)
			}
			sort.Strings(got)
			sort.Strings(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			if backlog == nil {
				t.Fatal("the JSON line of the new file did not arrive")
			}
			if wantTime := time.Date(2024, 5, 1, 12, 30, 45, 5e8, time.UTC); !backlog.Time.Equal(wantTime) {
				t.Errorf("backlog record time %v, want the line's own %v", backlog.Time, wantTime)
			}
		})
	}
}
