// Command demo shows sidelog's whole job on one machine, without a cluster: it injects the agent
// into an example Deployment with `sidelog inject`, then runs the injected agent container the way
// a kubelet would (its command, args and downward-API environment, its volumes as directories),
// lets a sample app write, rotate and end its log, and prints the records that arrive at a
// forward-protocol receiver, or with --protocol otlp at an OTLP/HTTP endpoint.
//
//	go run ./demo --sidelog bin/sidelog --agent bin/sidelog-agent --workload examples/deployment.yaml [--protocol otlp]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/internal/localpod"
	"github.com/sidelog/sidelog/sidecar/forward/forwardtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	sidelog := flag.String("sidelog", "bin/sidelog", "the sidelog binary")
	agent := flag.String("agent", "bin/sidelog-agent", "the sidelog-agent binary")
	workload := flag.String("workload", "examples/deployment.yaml", "a Deployment whose pods ask for the agent")
	protocol := flag.String("protocol", "forward", "how the agent ships: forward or otlp")
	flag.Parse()
	otlp := *protocol == "otlp"
	if !otlp && *protocol != "forward" {
		return fmt.Errorf("--protocol: got %q, want forward or otlp", *protocol)
	}

	dir, err := os.MkdirTemp("", "sidelog-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var recv interface {
		Wait(context.Context, int64) error
		Count() int64
	}
	upstream, what := "", ""
	var orecv *otlpReceiver
	var frecv *forwardtest.Server
	if otlp {
		orecv = startOTLPReceiver()
		defer orecv.Close()
		recv, upstream, what = orecv, orecv.URL(), "OTLP/HTTP endpoint"
	} else {
		if frecv, err = forwardtest.Start(forwardtest.Options{}); err != nil {
			return err
		}
		defer frecv.Close()
		recv, upstream, what = frecv, frecv.Addr(), "forward receiver"
	}

	step("1. sidelog inject", "The example Deployment asks for its logs with annotations. Its upstream is pointed at a local\n%s (%s), then `sidelog inject` adds the agent to its pod template:", what, upstream)
	src, err := os.ReadFile(*workload)
	if err != nil {
		return err
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(src, &d); err != nil {
		return fmt.Errorf("%s: %w", *workload, err)
	}
	d.Spec.Template.Annotations[injector.AnnotationUpstream] = upstream
	if otlp {
		d.Spec.Template.Annotations[injector.AnnotationUpstreamProtocol] = "otlp"
	}
	in := filepath.Join(dir, "deployment.yaml")
	if err := writeYAML(in, &d); err != nil {
		return err
	}
	cmd := exec.Command(*sidelog, "inject", "-f", in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("sidelog inject: %w", err)
	}
	var injected appsv1.Deployment
	if err := yaml.Unmarshal(out, &injected); err != nil {
		return fmt.Errorf("reading the injected Deployment: %w", err)
	}
	fmt.Printf("\n$ sidelog inject -f deployment.yaml   # the part that changed: the pod template\n%s\n", indent(templateYAML(&injected)))

	step("2. The pod starts", "The agent runs as the kubelet would start it: the injected command and environment, the\ndownward-API values of a pod, and the pod's volumes as directories of this machine.")
	pod := &corev1.Pod{
		ObjectMeta: injected.Spec.Template.ObjectMeta,
		Spec:       injected.Spec.Template.Spec,
	}
	pod.Name, pod.Namespace, pod.UID = "checkout-7c9d8-x2x4q", injected.Namespace, types.UID("0b5c5a52-2d54-4a2e-9d1f-6f0c8e4b2a10")
	pod.Spec.NodeName = "virtual-kubelet-fargate"
	agentCmd, err := localpod.Command(pod, injector.AgentContainer, localpod.Options{
		Binaries:   map[string]string{"/sidelog-agent": *agent},
		ScratchDir: dir,
	})
	if err != nil {
		return err
	}
	logDir := filepath.Join(dir, "volumes", "logs")
	var agentLog bytes.Buffer
	agentCmd.Stdout, agentCmd.Stderr = &agentLog, &agentLog
	if err := agentCmd.Start(); err != nil {
		return fmt.Errorf("starting the agent: %w", err)
	}
	fmt.Printf("   agent pid %d, log volume %s\n", agentCmd.Process.Pid, logDir)

	step("3. The app writes", "A sample app writes lines, a Java stack trace and an audit record, then logrotate moves\napp.log away and the app goes on writing to a new one.")
	app := filepath.Join(logDir, "app.log")
	lines := 0
	write := func(path string, text ...string) error {
		lines += len(text)
		return appendFile(path, strings.Join(text, "\n")+"\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := write(app, "2026-11-25 10:00:01 INFO  checkout started on :8080", "2026-11-25 10:00:02 INFO  cart 42: 3 items"); err != nil {
		return err
	}
	// Logs are rotated hours after a pod starts, not in its first millisecond: let the agent find
	// app.log before logrotate moves it.
	if err := recv.Wait(ctx, 2); err != nil {
		fmt.Println(agentLog.String())
		return fmt.Errorf("waiting for the first records (got %d): %w", recv.Count(), err)
	}
	if err := errors.Join(
		write(app,
			"2026-11-25 10:00:03 ERROR payment failed for cart 42",
			"java.lang.IllegalStateException: card declined",
			"\tat shop.Payment.charge(Payment.java:88)",
			"\tat shop.Checkout.pay(Checkout.java:31)",
			"Caused by: java.net.SocketTimeoutException: Read timed out",
			"\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)"),
		os.MkdirAll(filepath.Join(logDir, "audit"), 0o755),
		write(filepath.Join(logDir, "audit", "audit.json"), `{"user":"ann","action":"refund","cart":42}`),
		os.Rename(app, app+".1"),
		write(app, "2026-11-25 10:00:04 INFO  after rotation: cart 43 paid"),
	); err != nil {
		return err
	}
	// The trace above is one record, not six.
	records := int64(lines - 5)
	if err := recv.Wait(ctx, records); err != nil {
		fmt.Println(agentLog.String())
		return fmt.Errorf("waiting for %d records (got %d): %w", records, recv.Count(), err)
	}

	if otlp {
		step("4. Records at the OTLP endpoint", "Each request as the endpoint decoded it with the OTLP Go types: one resource per container with\nthe Kubernetes attributes of the OpenTelemetry conventions, then each record's body and file.")
		orecv.print(logDir)
	} else {
		step("4. Records at the aggregator", "Each record as the receiver got it: the forward-protocol tag, the event time, the log line and\nthe fields a Fluent Bit kubernetes filter would have added.")
	}
	for _, e := range eventsOf(frecv) {
		fmt.Printf("\n   %s  %s\n", e.Tag, e.Time.Format(time.RFC3339Nano))
		fmt.Printf("   log:  %s\n", indentAfterFirst(fmt.Sprint(e.Record["log"]), "         "))
		fmt.Printf("   file: %s\n", strings.TrimPrefix(fmt.Sprint(e.Record["file"]), filepath.Join(dir, "volumes", "logs")+"/"))
		k, _ := json.Marshal(e.Record["kubernetes"])
		fmt.Printf("   kubernetes: %s\n", k)
	}

	step("5. The pod stops", "The kubelet sends SIGTERM to the native sidecar after the app has exited; the agent drains.")
	if err := agentCmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	err = agentCmd.Wait()
	fmt.Printf("   agent exited: %v\n", exitStatus(err))
	fmt.Printf("\n%d lines written, %d records received (the stack trace is one record), 0 lost.\n", lines, recv.Count())
	if err != nil || recv.Count() != records {
		fmt.Println(agentLog.String())
		return fmt.Errorf("agent exit %v, %d records received, want %d", err, recv.Count(), records)
	}
	return nil
}

func step(title, text string, args ...any) {
	fmt.Printf("\n\033[1m== %s\033[0m\n%s\n", title, indent(fmt.Sprintf(text, args...)))
}

func indent(s string) string {
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ")
}

func indentAfterFirst(s, pad string) string { return strings.ReplaceAll(s, "\n", "\n"+pad) }

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// templateYAML renders the injected pod template with the long config JSON pretty-printed, so a
// person can read it.
func templateYAML(d *appsv1.Deployment) string {
	t := d.Spec.Template.DeepCopy()
	t.CreationTimestamp = metav1.Time{}
	b, _ := yaml.Marshal(t)
	var pretty bytes.Buffer
	for _, c := range t.Spec.InitContainers {
		for _, e := range c.Env {
			if e.Name == "SIDELOG_CONFIG" {
				_ = json.Indent(&pretty, []byte(e.Value), "", "  ")
			}
		}
	}
	s := string(b)
	if pretty.Len() > 0 {
		s += "\n# SIDELOG_CONFIG, pretty-printed:\n" + pretty.String() + "\n"
	}
	return s
}

func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}

// eventsOf returns the events of a forward receiver, none without one.
func eventsOf(s *forwardtest.Server) []forwardtest.Event {
	if s == nil {
		return nil
	}
	return s.Events()
}
