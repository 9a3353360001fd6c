package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/receipt"
	"github.com/sidelog/sidelog/webhook"
)

// TestCleanupThroughTheAPIServer: a pod asks the agent to remove its rotated files
// (sidelog.io/cleanup). Through the real API server and webhook, it is refused while the cluster
// policy does not allow it, and once the policy (reloaded from its file) does, a cleanup glob
// that matches the file being written is refused still. The pod created with a good one has its
// log volume read-write in the agent; that agent, shipping to the OpenTelemetry Collector's
// fluentforwardreceiver, keeps every rotated file while the receiver is down, however long they
// have settled, and removes them once every line in them was acknowledged, rename and
// copytruncate rotations alike. Every line arrives, and the live file is never removed.
func TestCleanupThroughTheAPIServer(t *testing.T) {
	recv := startCountingReceiver(t)
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	const ns = "rotating"
	createNamespace(t, cs, ns, true, nil)
	_, metricsPort := splitHostPort(t, freeAddr(t))
	base := fmt.Sprintf("metricsPort: %d\n", metricsPort)
	policyFile := writePolicy(t, base)
	wo := env.WebhookInstallOptions
	startWebhook(t, cfg, webhook.Options{
		Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir, PolicyFile: policyFile,
	})

	dir := t.TempDir()
	live := filepath.Join(dir, "app.log")
	podWith := func(name, cleanup string) *corev1.Pod {
		p := logPod(dir, map[string]string{
			injector.AnnotationTail + ".app":    dir + "/app.log*",
			injector.AnnotationCleanup + ".app": cleanup,
			injector.AnnotationUpstream:         recv.Addr,
		})
		p.Name, p.Namespace, p.UID = name, ns, ""
		return p
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	refused := func(p *corev1.Pod, want string) error {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, p, dryRun)
		if err == nil || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("create = %v, want a denial saying %q", err, want)
		}
		return nil
	}

	// The policy does not allow it.
	eventually(t, 60*time.Second, "the API server to call the webhook", func() error {
		return refused(podWith("web", dir+"/app.log-*"), "sidelog.io/cleanup.app: the cluster policy does not let the agent remove files (allowCleanup: false)")
	})

	// The cluster admin allows it: the webhook reloads its policy.
	if err := os.WriteFile(policyFile, []byte(base+"allowCleanup: true\ncleanupSettle: 2s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var created *corev1.Pod
	eventually(t, 90*time.Second, "the webhook to take the new policy", func() error {
		var err error
		created, err = cs.CoreV1().Pods(ns).Create(ctx, podWith("web", dir+"/app.log-*"), metav1.CreateOptions{})
		return err
	})
	if err := refused(podWith("web-bad", dir+"/app*.log"), "sidelog.io/cleanup.app: "+dir+"/app*.log matches "+live+", the file that tail glob "+dir+"/app.log* of container \"app\" names, which is the file being written"); err != nil {
		t.Error(err)
	}
	if err := refused(podWith("web-outside", dir+"/old/app.log-*"), "is not matched by the tail globs of container \"app\""); err != nil {
		t.Error(err)
	}

	agentSpec := agentContainerOf(created)
	if agentSpec == nil {
		t.Fatal("the created pod has no agent")
	}
	if i := slices.IndexFunc(agentSpec.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "logs" }); i < 0 || agentSpec.VolumeMounts[i].ReadOnly {
		t.Fatalf("the agent's mount of the log volume: %+v; want it read-write", agentSpec.VolumeMounts)
	}
	acfg, err := agentOf(created)
	if err != nil {
		t.Fatal(err)
	}
	if in := acfg.Inputs[0]; !slices.Equal(in.Cleanup, []string{dir + "/app.log-*"}) || in.CleanupSettle.D() != 2*time.Second {
		t.Fatalf("agent input %+v: want cleanup %s/app.log-* settling for 2s", in, dir)
	}

	// The receiver is down while the app writes and rotates: logrotate dateext by rename and
	// create, twice, then by copytruncate.
	recv.down(t)
	agent := runInjectedAgent(t, created, map[string]string{"logs": dir})
	metrics := agentMetricsURL(t, created)
	const perFile = 2000
	var seq int64
	var rotated []string
	for i := range 3 {
		appendLines(t, live, seq, seq+perFile)
		seq += perFile
		name := filepath.Join(dir, fmt.Sprintf("app.log-2026113%d", i))
		if i < 2 {
			if err := os.Rename(live, name); err != nil {
				t.Fatal(err)
			}
		} else {
			// Give the agent time to find the copy as a copy first, as logrotate's copy takes a
			// while on a big file.
			copyFile(t, live, name)
			time.Sleep(500 * time.Millisecond)
			if err := os.Truncate(live, 0); err != nil {
				t.Fatal(err)
			}
		}
		rotated = append(rotated, name)
		time.Sleep(300 * time.Millisecond) // the app writes on: the live file is the newest
		appendLines(t, live, seq, seq+10)
		seq += 10
	}

	// Long past the settle period, with nothing acknowledged, every rotated file is there.
	time.Sleep(6 * time.Second)
	for _, p := range rotated {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("rotated file %s gone while the receiver was down: %v\n%s", p, err, agent.output)
		}
	}
	if n := scrape(t, metrics, "sidelog_files_removed_total"); n != 0 {
		t.Fatalf("sidelog_files_removed_total = %v while the receiver was down, want 0", n)
	}

	recv.up(t)
	recv.tally.waitAll(t, seq, 2*time.Minute)
	eventually(t, time.Minute, "the rotated files removed", func() error {
		left, err := filepath.Glob(dir + "/app.log-*")
		if err != nil || len(left) > 0 {
			return fmt.Errorf("still there: %v %v", left, err)
		}
		return nil
	})
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("the live file was removed: %v", err)
	}
	if n := scrape(t, metrics, "sidelog_files_removed_total"); n != float64(len(rotated)) {
		t.Errorf("sidelog_files_removed_total = %v, want %d", n, len(rotated))
	}
	if n := scrape(t, metrics, "sidelog_remove_errors_total"); n != 0 {
		t.Errorf("sidelog_remove_errors_total = %v, want 0", n)
	}
	var removed []string
	for _, rec := range logLines(agent.output.String(), "removed delivered file") {
		removed = append(removed, fmt.Sprint(rec["path"]))
	}
	slices.Sort(removed)
	if !slices.Equal(removed, rotated) {
		t.Errorf("removals logged for %v, want %v", removed, rotated)
	}

	// The app goes on writing; everything reaches the receiver, the live file stays.
	appendLines(t, live, seq, seq+100)
	seq += 100
	recv.tally.waitAll(t, seq, time.Minute)
	if err := agent.stop(t); err != nil {
		t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("the live file was removed: %v", err)
	}
	msg, err := os.ReadFile(agent.terminationMessage)
	if err != nil {
		t.Fatal(err)
	}
	r, err := receipt.Parse(string(msg))
	if err != nil || len(r.Containers) != 1 || r.Containers[0].Removed != int64(len(rotated)) || !r.Drained {
		t.Errorf("receipt %s (%v): want the %d rotated files removed, drained", msg, err, len(rotated))
	}
	s := checkNothingLost(t, recv.tally, seq)
	t.Logf("%d lines written in %d files, %d received (%d duplicates), %d rotated files removed",
		seq, len(rotated)+1, s.Received, s.Duplicates, len(removed))
}
