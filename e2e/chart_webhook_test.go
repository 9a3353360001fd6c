package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/internal/localpod"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/webhook"
)

// TestChartWebhook installs the chart in self-managed TLS mode with webhook.url pointing at this
// machine, starts `sidelog webhook` exactly as the installed Deployment would start it (its
// command, args, environment and mounted ConfigMap; only paths and ports differ) with the
// identity and RBAC of the chart's ServiceAccount, and creates an annotated Deployment's pod
// through the API server: it comes back injected, and the agent in it ships the pod's log lines
// to the OpenTelemetry forward receiver. Then helm upgrade must leave the webhook's certificates
// alone.
func TestChartWebhook(t *testing.T) {
	h := newHelm(t)
	env, _ := chartControlPlane(t)
	h.kubeconfig = adminKubeconfig(t, env)
	admin := clientsetFor(t, h.kubeconfig)
	ctx := context.Background()

	addr := freeAddr(t)
	_, port := splitHostPort(t, addr)
	_, agentPort := splitHostPort(t, freeAddr(t)) // the agent's /metrics: these processes share one network
	recv := startReceiver(t)
	h.must(t, "install", chartRelease, chartDir, "-n", ownNS, "--create-namespace",
		"--set", "webhook.url=https://"+addr+webhook.Path,
		"--set", "policy.upstream[0]="+recv.Addr,
		"--set", "policy.metricsPort="+strconv.Itoa(agentPort))

	// The webhook as its Deployment runs it, authenticated as its ServiceAccount.
	dep, err := admin.AppsV1().Deployments(ownNS).Get(ctx, "sidelog-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa := dep.Spec.Template.Spec.ServiceAccountName
	saKubeconfig := userKubeconfig(t, env, envtest.User{
		Name:   "system:serviceaccount:" + ownNS + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ownNS},
	})
	wh := startChartWebhook(t, admin, dep, port, saKubeconfig)

	hook, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, chartRelease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := admin.CoreV1().Secrets(ownNS).Get(ctx, "sidelog-webhook-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hook.Webhooks[0].ClientConfig.CABundle) == 0 || len(secret.Data) == 0 {
		t.Fatalf("ready, but caBundle has %d bytes and the chart's Secret %d keys: the webhook did not fill them",
			len(hook.Webhooks[0].ClientConfig.CABundle), len(secret.Data))
	}

	t.Run("its RBAC denies what it does not need", func(t *testing.T) {
		sa := clientsetFor(t, saKubeconfig)
		for _, tt := range []struct {
			what string
			call func() error
		}{
			{"create a Secret", func() error {
				_, err := sa.CoreV1().Secrets(ownNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{})
				return err
			}},
			{"list Secrets", func() error { _, err := sa.CoreV1().Secrets(ownNS).List(ctx, metav1.ListOptions{}); return err }},
			{"delete its own Secret", func() error {
				return sa.CoreV1().Secrets(ownNS).Delete(ctx, "sidelog-webhook-certs", metav1.DeleteOptions{})
			}},
			{"list webhook configurations", func() error {
				_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
				return err
			}},
			{"list pods", func() error { _, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err }},
			{"update a namespace", func() error {
				ns, err := admin.CoreV1().Namespaces().Get(ctx, ownNS, metav1.GetOptions{})
				if err != nil {
					return err
				}
				_, err = sa.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
				return err
			}},
		} {
			if err := tt.call(); !apierrors.IsForbidden(err) {
				t.Errorf("the webhook's ServiceAccount may %s: %v, want Forbidden", tt.what, err)
			}
		}
	})

	createNamespace(t, admin, "shop", true, nil)
	logDir, apiDir := t.TempDir(), t.TempDir()
	checkout := appDeployment(logDir, apiDir)
	checkout, err = admin.AppsV1().Deployments("shop").Create(ctx, checkout, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs := replicaSetOf(checkout)
	if rs, err = admin.AppsV1().ReplicaSets("shop").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var pod *corev1.Pod
	t.Run("the Deployment's pod comes back injected", func(t *testing.T) {
		pod, err = admin.CoreV1().Pods("shop").Create(ctx, podOf(rs), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating the pod: %v\nwebhook log:\n%s", err, wh.output)
		}
		agent, err := localpod.Container(pod, injector.AgentContainer)
		if err != nil {
			t.Fatal(err)
		}
		if agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways || len(pod.Spec.InitContainers) != 1 {
			t.Errorf("agent is not a native sidecar: restartPolicy %v, %d init containers", agent.RestartPolicy, len(pod.Spec.InitContainers))
		}
		var status injector.Status
		if err := json.Unmarshal([]byte(pod.Annotations[injector.AnnotationStatus]), &status); err != nil || status.Mode != injector.ModeNative {
			t.Errorf("%s = %q (%v), want mode native", injector.AnnotationStatus, pod.Annotations[injector.AnnotationStatus], err)
		}
		cfg := agentConfig(t, agent)
		if !slices.Equal(cfg.Upstream.Servers, []string{recv.Addr}) {
			t.Errorf("agent upstream = %v, want the chart's policy.upstream [%s]", cfg.Upstream.Servers, recv.Addr)
		}
		// Resolved with the chart's RBAC: the ReplicaSet's metadata names the Deployment.
		if want := []config.Owner{{Kind: "ReplicaSet", Name: rs.Name}, {Kind: "Deployment", Name: "checkout"}}; !slices.Equal(cfg.Owners, want) {
			t.Errorf("agent owners = %v, want %v\nwebhook log:\n%s", cfg.Owners, want, wh.output)
		}
	})
	if pod == nil {
		t.FailNow()
	}

	// The ReplicaSet's next pods reach the webhook like the first but for the time in their
	// managedFields, and are answered from what it remembers: each must come out as the first did.
	t.Run("the ReplicaSet's next pods get the same agent", func(t *testing.T) {
		first, err := localpod.Container(pod, injector.AgentContainer)
		if err != nil {
			t.Fatal(err)
		}
		remembered := metricSum(t, wh.metricsURL, "sidelog_webhook_remembered_answers_total")
		for i := range 3 {
			// A second apart at least: managedFields carry the time to the second.
			time.Sleep(1100 * time.Millisecond)
			next, err := admin.CoreV1().Pods("shop").Create(ctx, podOf(rs), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("creating pod %d: %v", i+2, err)
			}
			agent, err := localpod.Container(next, injector.AgentContainer)
			if err != nil {
				t.Fatalf("pod %s: %v", next.Name, err)
			}
			if diff := cmp.Diff(first, agent); diff != "" {
				t.Errorf("pod %s's agent differs from pod %s's (-first +next):\n%s", next.Name, pod.Name, diff)
			}
			if next.Annotations[injector.AnnotationStatus] != pod.Annotations[injector.AnnotationStatus] {
				t.Errorf("pod %s: %s = %s, want %s", next.Name, injector.AnnotationStatus, next.Annotations[injector.AnnotationStatus], pod.Annotations[injector.AnnotationStatus])
			}
			if err := admin.CoreV1().Pods("shop").Delete(ctx, next.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if got := metricSum(t, wh.metricsURL, "sidelog_webhook_remembered_answers_total") - remembered; got != 3 {
			t.Errorf("%v of the 3 pods answered from memory, want all", got)
		}
	})

	t.Run("matchConditions: only pods with sidelog.io/ annotations reach the webhook", func(t *testing.T) {
		before := admissions(t, wh.metricsURL)
		if before < 1 {
			t.Fatalf("admissions = %v before, want the injected pod counted", before)
		}
		plain := podOf(rs)
		plain.Annotations = map[string]string{"example.com/team": "checkout"}
		got, err := admin.CoreV1().Pods("shop").Create(ctx, plain, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.InitContainers) != 0 || admissions(t, wh.metricsURL) != before {
			t.Errorf("a pod without sidelog.io/ annotations: %d init containers, admissions %v → %v; want it untouched and the webhook not called",
				len(got.Spec.InitContainers), before, admissions(t, wh.metricsURL))
		}
		typo := podOf(rs)
		typo.Annotations = map[string]string{injector.Prefix + "tial.app": logDir + "/*.log"}
		_, err = admin.CoreV1().Pods("shop").Create(ctx, typo, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if want := "did you mean " + injector.AnnotationTail; !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("a misspelt annotation: %v, want the webhook's refusal saying %q", err, want)
		}
	})

	t.Run("the injected agent ships the pod's lines", func(t *testing.T) {
		agent := runInjectedAgent(t, pod, map[string]string{"logs": logDir, "api-logs": apiDir})
		app := filepath.Join(logDir, "app.log")
		want := writeThroughRotations(t, recv, app)
		var requests []string
		for i := range 100 {
			requests = append(requests, fmt.Sprintf(`{"method":"POST","path":"/cart/%d","status":201,"ms":%d.5}`, i, i))
		}
		appendFile(t, filepath.Join(apiDir, "access.json"), requests...)
		recv.wait(t, len(want)+len(requests))
		if err := agent.stop(t); err != nil {
			t.Errorf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
		}

		got := recv.records()
		kube := func(container string) map[string]any {
			return map[string]any{
				"namespace_name": "shop", "pod_name": pod.Name, "pod_id": string(pod.UID), "container_name": container, "host": "",
				"labels":           map[string]any{"app.kubernetes.io/name": "checkout", appsv1.DefaultDeploymentUniqueLabelKey: pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey], injector.LabelInjected: "true"},
				"namespace_labels": map[string]any{corev1.LabelMetadataName: "shop", webhook.NamespaceLabel: webhook.NamespaceLabelEnabled},
				"workload_kind":    "Deployment", "workload_name": "checkout",
			}
		}
		var logs []string
		var api []received
		for _, r := range got {
			container := "app"
			if r.File != app {
				container = "api"
				api = append(api, r)
			} else {
				logs = append(logs, r.Log)
			}
			if diff := cmp.Diff(kube(container), r.Kubernetes); diff != "" {
				t.Fatalf("record of %s: kubernetes (-want +got):\n%s", r.File, diff)
			}
			if wantTag := "kube.shop." + pod.Name + "." + container; r.Tag != wantTag {
				t.Fatalf("record of %s: tag %q, want %q", r.File, r.Tag, wantTag)
			}
		}
		slices.Sort(want)
		slices.Sort(logs)
		if diff := cmp.Diff(want, logs); diff != "" {
			t.Errorf("app.log records, lost (-) or duplicated (+):\n%s", diff)
		}
		if len(api) != len(requests) {
			t.Fatalf("got %d JSON records, want %d", len(api), len(requests))
		}
		for i, r := range api {
			if r.Attributes["path"] != fmt.Sprintf("/cart/%d", i) || fmt.Sprint(r.Attributes["status"]) != "201" || r.Attributes["ms"] != float64(i)+0.5 {
				t.Fatalf("JSON record %d attributes = %v, want the fields of %s", i, r.Attributes, requests[i])
			}
		}
	})

	t.Run("helm upgrade keeps the webhook's certificates", func(t *testing.T) {
		h.must(t, "upgrade", chartRelease, chartDir, "-n", ownNS, "--reuse-values", "--set", "timeoutSeconds=7")
		hook2, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, chartRelease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		secret2, err := admin.CoreV1().Secrets(ownNS).Get(ctx, "sidelog-webhook-certs", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *hook2.Webhooks[0].TimeoutSeconds != 7 {
			t.Errorf("timeoutSeconds = %d after the upgrade, want 7", *hook2.Webhooks[0].TimeoutSeconds)
		}
		if !bytes.Equal(hook2.Webhooks[0].ClientConfig.CABundle, hook.Webhooks[0].ClientConfig.CABundle) {
			t.Error("helm upgrade changed the caBundle the webhook published")
		}
		if diff := cmp.Diff(secret.Data, secret2.Data); diff != "" {
			t.Errorf("helm upgrade changed the webhook's Secret (-before +after):\n%s", diff)
		}
		// At once, before the webhook's next resync could repair anything.
		again, err := admin.CoreV1().Pods("shop").Create(ctx, podOf(rs), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("creating a pod after the upgrade: %v", err)
		}
		if _, err := localpod.Container(again, injector.AgentContainer); err != nil {
			t.Errorf("after the upgrade: %v", err)
		}
	})
}

// chartWebhook is `sidelog webhook` running as a process.
type chartWebhook struct {
	output     *syncBuffer
	metricsURL string
	readyURL   string
	volumeDirs map[string]string // the local directories of its volumes, by volume name
	done       chan error        // receives its exit
}

// startChartWebhook starts the Deployment's container as its pod would run it, in ownNS: the
// command mapped to this build's binary, the args and environment (downward API included, $(VAR)
// references expanded as the kubelet does), its ConfigMap volume written from the API server's
// ConfigMap. Rewritten: mount paths to local directories (localpod does it), the listening ports
// to free ones, and --kubeconfig added. It waits until /readyz answers 200.
func startChartWebhook(t *testing.T, admin kubernetes.Interface, dep *appsv1.Deployment, port int, kubeconfig string) *chartWebhook {
	t.Helper()
	wh := launchChartWebhook(t, admin, dep, port, kubeconfig)
	eventually(t, 90*time.Second, "the webhook ready", func() error {
		select {
		case err := <-wh.done:
			t.Fatalf("webhook exited: %v\n%s", err, wh.output)
		default:
		}
		resp, err := http.Get(wh.readyURL)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	})
	return wh
}

// launchChartWebhook starts the webhook as startChartWebhook does, without waiting for it to
// be ready.
func launchChartWebhook(t *testing.T, admin kubernetes.Interface, dep *appsv1.Deployment, port int, kubeconfig string) *chartWebhook {
	return launchChartWebhookWith(t, admin, dep, port, kubeconfig, false)
}

// launchChartWebhookWith is launchChartWebhook, keeping --metrics-secure if secureMetrics.
func launchChartWebhookWith(t *testing.T, admin kubernetes.Interface, dep *appsv1.Deployment, port int, kubeconfig string, secureMetrics bool) *chartWebhook {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-local", Namespace: dep.Namespace, Labels: dep.Spec.Template.Labels},
		Spec:       *dep.Spec.Template.Spec.DeepCopy(),
	}
	volumeDirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		cm, err := admin.CoreV1().ConfigMaps(pod.Namespace).Get(context.Background(), v.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for k, data := range cm.Data {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		volumeDirs[v.Name] = dir
	}
	name := pod.Spec.Containers[0].Name
	cmd, err := localpod.Command(pod, name, localpod.Options{
		Binaries:   map[string]string{"/sidelog": binary(t, "sidelog")},
		VolumeDirs: volumeDirs,
		ScratchDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	healthAddr, metricsAddr := freeAddr(t), freeAddr(t)
	// The tests read the metrics over plain HTTP; TestChartMetrics checks the secure serving.
	args := slices.DeleteFunc(cmd.Args[1:], func(a string) bool { return strings.HasPrefix(a, "--metrics-secure") && !secureMetrics })
	for i, a := range args {
		flag, _, _ := strings.Cut(a, "=")
		switch flag {
		case "--port":
			args[i] = "--port=" + strconv.Itoa(port)
		case "--health-addr":
			args[i] = "--health-addr=" + healthAddr
		case "--metrics-addr":
			args[i] = "--metrics-addr=" + metricsAddr
		}
	}
	cmd.Args = append(append(cmd.Args[:1], args...), "--kubeconfig="+kubeconfig)
	wh := &chartWebhook{
		output: new(syncBuffer), metricsURL: "http://" + metricsAddr + "/metrics", readyURL: "http://" + healthAddr + "/readyz",
		volumeDirs: volumeDirs, done: make(chan error, 1),
	}
	cmd.Stdout, cmd.Stderr = wh.output, wh.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); exited <- err; wh.done <- err }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("webhook exit after SIGTERM: %v\n%s", err, wh.output)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Errorf("webhook still running a minute after SIGTERM\n%s", wh.output)
		}
		if t.Failed() {
			t.Logf("sidelog %s\n%s", strings.Join(args, " "), wh.output)
		}
	})
	return wh
}

func clientsetFor(tb testing.TB, kubeconfig string) kubernetes.Interface {
	tb.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// appDeployment is a workload whose container "app" writes Java logs to an emptyDir mounted at
// logDir and whose container "api" writes JSON lines to one at apiDir (local directories too, so
// that the agent run here reads the same paths), annotated to ship them; the upstream comes from
// the chart's policy.
func appDeployment(logDir, apiDir string) *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/name": "checkout"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: labels,
					Annotations: map[string]string{
						injector.AnnotationTail + ".app":      logDir + "/*.log",
						injector.AnnotationMultiline + ".app": "java",
						injector.AnnotationTail + ".api":      apiDir + "/*.json",
						injector.AnnotationParser + ".api":    "json",
					},
				},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "app", Image: "ghcr.io/example/checkout:2.7.1",
						VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: logDir}},
					}, {
						Name: "api", Image: "ghcr.io/example/checkout-api:2.7.1",
						VolumeMounts: []corev1.VolumeMount{{Name: "api-logs", MountPath: apiDir}},
					}},
					Volumes: []corev1.Volume{
						{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "api-logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}

// replicaSetOf is the ReplicaSet the Deployment controller would make for d: named and labelled
// with a hash of the pod template, owned by d.
func replicaSetOf(d *appsv1.Deployment) *appsv1.ReplicaSet {
	tmpl, _ := json.Marshal(d.Spec.Template)
	h := fnv.New32a()
	h.Write(tmpl)
	hash := rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
	template := *d.Spec.Template.DeepCopy()
	template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	selector := d.Spec.Selector.DeepCopy()
	selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: selector, Template: template},
	}
}

// podOf is a pod as the ReplicaSet controller creates it from rs's template.
func podOf(rs *appsv1.ReplicaSet) *corev1.Pod {
	t := rs.Spec.Template.DeepCopy()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: rs.Name + "-", Namespace: rs.Namespace, Labels: t.Labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
		},
		Spec: t.Spec,
	}
}

// agentConfig decodes the agent's configuration from its environment.
func agentConfig(tb testing.TB, c *corev1.Container) *config.Config {
	tb.Helper()
	for _, e := range c.Env {
		if e.Name == config.Env {
			var cfg config.Config
			if err := json.Unmarshal([]byte(e.Value), &cfg); err != nil {
				tb.Fatalf("agent config: %v", err)
			}
			return &cfg
		}
	}
	tb.Fatalf("agent container has no %s", config.Env)
	return nil
}

// admissions is the webhook's count of admission requests, all outcomes.
func admissions(tb testing.TB, metricsURL string) float64 {
	tb.Helper()
	return metricSum(tb, metricsURL, "sidelog_webhook_admissions_total")
}

// metricSum is the sum of the series of metric name that metricsURL serves.
func metricSum(tb testing.TB, metricsURL, name string) float64 {
	tb.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, name); ok && rest != "" && (rest[0] == '{' || rest[0] == ' ') {
			value := rest
			if rest[0] == '{' {
				_, value, _ = strings.Cut(rest, "} ")
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				tb.Fatalf("metrics line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}
