package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

// TestJobPodReceipt: the injected agent of a Job's pod ships every line, exits 0 on SIGTERM and
// leaves in its termination message file a receipt that says every line delivered, nothing
// pending, the drain finished. Put into the pod's status through the API server, as the kubelet
// reports it, that message is what `sidelog receipt` reads from kubectl's JSON and prints.
func TestJobPodReceipt(t *testing.T) {
	_, cfg := controlPlane(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	createNamespace(t, cs, "shop", false, nil)
	ctx := context.Background()

	dir := t.TempDir()
	recv := startReceiver(t)
	pod := logPod(dir, map[string]string{
		"sidelog.io/tail":     dir + "/*.log",
		"sidelog.io/upstream": recv.Addr,
	})
	pod.Name, pod.UID = "nightly-report-x7k2p", ""
	pod.Labels = map[string]string{"batch.kubernetes.io/job-name": "nightly-report"}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod = inject(t, pod)
	pod, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agentSpec := agentContainerOf(pod)
	native := len(pod.Spec.InitContainers) > 0 && pod.Spec.InitContainers[len(pod.Spec.InitContainers)-1].Name == injector.AgentContainer
	if agentSpec == nil {
		t.Fatal("the injected pod has no agent container")
	}
	if agentSpec.TerminationMessagePath != corev1.TerminationMessagePathDefault {
		t.Errorf("terminationMessagePath %q, want %q", agentSpec.TerminationMessagePath, corev1.TerminationMessagePathDefault)
	}
	agent := runInjectedAgent(t, pod, map[string]string{"logs": dir})

	var lines []string
	for i := range 500 {
		lines = append(lines, fmt.Sprintf("report row %d written", i))
	}
	lines = append(lines, "report done")
	logFile := filepath.Join(dir, "job.log")
	appendFile(t, logFile, lines...)
	if err := agent.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
	}
	if got := recv.wait(t, len(lines)); len(got) != len(lines) {
		t.Fatalf("got %d records, want %d", len(got), len(lines))
	}

	msg, err := os.ReadFile(agent.terminationMessage)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) > receipt.MaxBytes {
		t.Errorf("termination message of %d bytes, more than the kubelet keeps (%d)", len(msg), receipt.MaxBytes)
	}
	t.Logf("termination message: %s", msg)
	got, err := receipt.Parse(string(msg))
	if err != nil {
		t.Fatalf("%v: %s", err, msg)
	}
	fi, err := os.Stat(logFile)
	if err != nil {
		t.Fatal(err)
	}
	want := receipt.Receipt{Schema: receipt.SchemaVersion, Agent: got.Agent, Drained: true, Containers: []receipt.Container{
		{Name: "app", Counts: receipt.Counts{Lines: int64(len(lines)), Bytes: fi.Size(), Files: 1}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("receipt (-want +got):\n%s\n%s", diff, msg)
	}
	if got.Agent == "" {
		t.Error("the receipt does not say the agent's version")
	}

	// The kubelet's report of the ended pod: the agent's message in its status.
	finished := metav1.NewTime(time.Now())
	terminated := func(name, message string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Image: "example", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", Message: message, StartedAt: finished, FinishedAt: finished,
		}}}
	}
	pod.Status.Phase = corev1.PodSucceeded
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("app", "")}
	if native {
		pod.Status.InitContainerStatuses = []corev1.ContainerStatus{terminated(injector.AgentContainer, string(msg))}
	} else {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, terminated(injector.AgentContainer, string(msg)))
	}
	if _, err := cs.CoreV1().Pods("shop").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// kubectl get pods -l batch.kubernetes.io/job-name=nightly-report -o json | sidelog receipt
	list, err := cs.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=nightly-report"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		list.Items[i].APIVersion, list.Items[i].Kind = "v1", "Pod"
	}
	stdin, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": list.Items})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t, "sidelog"), "receipt")
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sidelog receipt: %v\n%s", err, out)
	}
	t.Logf("sidelog receipt:\n%s", out)
	table := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(table) != 2 {
		t.Fatalf("want a header and one row, got:\n%s", out)
	}
	row := strings.Fields(table[1])
	wantRow := []string{"shop/nightly-report-x7k2p", "app", fmt.Sprint(len(lines)), fmt.Sprint(fi.Size()), "0", "0", "yes"}
	if diff := cmp.Diff(wantRow, row); diff != "" {
		t.Errorf("row (-want +got):\n%s", diff)
	}
}
