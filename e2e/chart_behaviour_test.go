package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/webhook"
)

// TestChartWebhookBehaviour installs the chart with failurePolicy Ignore and webhook.url
// pointing at this machine, puts a policy the webhook cannot parse into its ConfigMap (as a
// kubectl edit that bypasses the chart's schema would), and starts `sidelog webhook` as the
// Deployment runs it (see startChartWebhook). The replica must stay up but not ready, and the
// API server's requests must be answered as the configuration says: an internal error admits
// the pod unchanged, with a warning. Once the policy is fixed it becomes ready and injects.
func TestChartWebhookBehaviour(t *testing.T) {
	h := newHelm(t)
	env, _ := chartControlPlane(t)
	h.kubeconfig = adminKubeconfig(t, env)
	admin := clientsetFor(t, h.kubeconfig)
	ctx := context.Background()

	addr := freeAddr(t)
	_, port := splitHostPort(t, addr)
	const goodPolicy = "upstream: [fluentd.logging:24224]\nmissingVolume: emptyDir\n"
	h.must(t, "install", chartRelease, chartDir, "-n", ownNS, "--create-namespace",
		"--set", "webhook.url=https://"+addr+webhook.Path,
		"--set", "failurePolicy=Ignore",
		"--set", "policy.upstream[0]=fluentd.logging:24224")

	cm, err := admin.CoreV1().ConfigMaps(ownNS).Get(ctx, "sidelog-policy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["policy.yaml"] = "upstream: [fluentd.logging:24224]\nsidecarMode: sometimes\n"
	if _, err := admin.CoreV1().ConfigMaps(ownNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	dep, err := admin.AppsV1().Deployments(ownNS).Get(ctx, "sidelog-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa := dep.Spec.Template.Spec.ServiceAccountName
	saKubeconfig := userKubeconfig(t, env, envtest.User{
		Name:   "system:serviceaccount:" + ownNS + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ownNS},
	})
	wh := launchChartWebhook(t, admin, dep, port, saKubeconfig)
	createNamespace(t, admin, "shop", true, nil)

	warn := &warnings{}
	cs := warnedClient(t, h.kubeconfig, warn)
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{injector.AnnotationTail: "/var/log/app/*.log"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
		}
	}

	t.Run("a replica started with a bad policy is not ready and says why", func(t *testing.T) {
		eventually(t, 60*time.Second, "the policy check failing on /readyz", func() error {
			select {
			case err := <-wh.done:
				t.Fatalf("the webhook exited with a bad policy: %v\n%s", err, wh.output)
			default:
			}
			status, body := get(wh.readyURL)
			if status != http.StatusInternalServerError || !strings.Contains(body, "[-]policy failed") {
				return fmt.Errorf("/readyz: %d %s", status, body)
			}
			return nil
		})
		if out := wh.output.String(); !strings.Contains(out, "no valid cluster policy") || !strings.Contains(out, "sidecarMode") {
			t.Errorf("the webhook's log does not say why it is not ready:\n%s", out)
		}
	})

	t.Run("failurePolicy Ignore: an internal error admits the pod unchanged, with a warning", func(t *testing.T) {
		// Until the webhook serves, the API server itself ignores it, without a warning.
		var got *corev1.Pod
		eventually(t, 60*time.Second, "the webhook's warning", func() error {
			warn.take()
			var err error
			got, err = cs.CoreV1().Pods("shop").Create(ctx, pod("ignored"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return err
			}
			if w := strings.Join(warn.take(), "\n"); !strings.Contains(w, "no valid cluster policy") || !strings.Contains(w, "Ignore") {
				return fmt.Errorf("warnings %q", w)
			}
			return nil
		})
		if len(got.Spec.InitContainers)+len(got.Spec.Containers) != 1 || got.Annotations[injector.AnnotationStatus] != "" {
			t.Errorf("the pod was changed: %d init containers, %d containers, status %q",
				len(got.Spec.InitContainers), len(got.Spec.Containers), got.Annotations[injector.AnnotationStatus])
		}
	})

	t.Run("with the policy fixed the replica becomes ready and injects", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(wh.volumeDirs["policy"], "policy.yaml"), []byte(goodPolicy), 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "/readyz ok", func() error {
			if status, body := get(wh.readyURL); status != http.StatusOK {
				return fmt.Errorf("/readyz: %d %s", status, body)
			}
			return nil
		})
		got, err := cs.CoreV1().Pods("shop").Create(ctx, pod("injected"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if got.Annotations[injector.AnnotationStatus] == "" || got.Labels[injector.LabelInjected] != "true" {
			t.Errorf("not injected: annotations %v, labels %v", got.Annotations, got.Labels)
		}
	})

	policy, err := injector.ParsePolicy([]byte(goodPolicy))
	if err != nil {
		t.Fatal(err)
	}
	deployment := func(name string, annotations map[string]string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
					Spec: corev1.PodSpec{
						Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1",
							VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: "/var/log/app"}}}},
						Volumes: []corev1.Volume{{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
					},
				},
			},
		}
	}

	t.Run("a Deployment with a bad sidelog annotation is refused at create, as its pods would be", func(t *testing.T) {
		bad := deployment("typo", map[string]string{injector.Prefix + "tial.app": "/var/log/app/*.log"})
		_, err := cs.AppsV1().Deployments("shop").Create(ctx, bad, metav1.CreateOptions{})
		podErr := func() error {
			p := pod("typo")
			p.Annotations = bad.Spec.Template.Annotations
			_, err := cs.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}()
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), webhook.WorkloadWebhookName) || !strings.Contains(err.Error(), "did you mean "+injector.AnnotationTail) {
			t.Fatalf("creating the Deployment: %v\nwant a refusal by %s naming the annotation", err, webhook.WorkloadWebhookName)
		}
		_, podMsg, _ := strings.Cut(podErr.Error(), "denied the request: ")
		if _, msg, _ := strings.Cut(err.Error(), "denied the request: "); podMsg == "" || msg != podMsg {
			t.Errorf("the Deployment's refusal %q differs from its pod's %q", msg, podMsg)
		}
	})

	t.Run("a CronJob whose pods would be refused is refused at create", func(t *testing.T) {
		d := deployment("nightly", map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log", injector.AnnotationSidecarMode: "legacy"})
		d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		cron := &batchv1.CronJob{
			ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "shop"},
			Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{
				Spec: batchv1.JobSpec{Template: d.Spec.Template},
			}},
		}
		_, err := cs.BatchV1().CronJobs("shop").Create(ctx, cron, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), webhook.WorkloadWebhookName) || !strings.Contains(err.Error(), injector.AnnotationSidecarMode) {
			t.Fatalf("creating the CronJob: %v\nwant a refusal by %s naming %s", err, webhook.WorkloadWebhookName, injector.AnnotationSidecarMode)
		}
	})

	t.Run("a good Deployment is admitted with warnings where the injector decided something", func(t *testing.T) {
		warn.take()
		d := deployment("decided", map[string]string{injector.AnnotationTail + ".app": "/srv/logs/*.log"})
		created, err := cs.AppsV1().Deployments("shop").Create(ctx, d, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if w := strings.Join(warn.take(), "\n"); !strings.Contains(w, "/srv/logs/*.log was on no volume") {
			t.Errorf("warnings %q, want the emptyDir the injector adds explained", w)
		}
		if len(created.Spec.Template.Spec.InitContainers) != 0 || created.Spec.Template.Annotations[injector.AnnotationStatus] != "" {
			t.Errorf("the workload check changed the Deployment's template")
		}
		plain := deployment("plain", map[string]string{"example.com/team": "shop"})
		if _, err := cs.AppsV1().Deployments("shop").Create(ctx, plain, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if w := warn.take(); len(w) != 0 {
			t.Errorf("a Deployment without sidelog annotations got warnings %q", w)
		}
	})

	t.Run("a Deployment whose annotations change gets pods with the new agent", func(t *testing.T) {
		// The template as `sidelog inject` in a GitOps pipeline writes it, with the same policy.
		d := deployment("gitops", map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"})
		tmpl := &corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
		tmpl.Namespace = "shop"
		injected, _, err := injector.Inject(tmpl, nil, policy)
		if err != nil {
			t.Fatal(err)
		}
		injected.Namespace = ""
		d.Spec.Template = corev1.PodTemplateSpec{ObjectMeta: injected.ObjectMeta, Spec: injected.Spec}
		if d, err = cs.AppsV1().Deployments("shop").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		podUpstream := func(d *appsv1.Deployment) (string, *corev1.Pod) {
			t.Helper()
			rs, err := cs.AppsV1().ReplicaSets("shop").Create(ctx, replicaSetOf(d), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := cs.CoreV1().Pods("shop").Create(ctx, podOf(rs), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Fatal(err)
			}
			c, err := agentOf(p)
			if err != nil {
				return "", p
			}
			return c.Upstream.Servers[0], p
		}
		if got, _ := podUpstream(d); got != "fluentd.logging:24224" {
			t.Fatalf("pod of the injected template: upstream %q, want the policy's", got)
		}

		warn.take()
		d.Spec.Template.Annotations[injector.AnnotationUpstream] = "fluentd-new.logging:24224"
		if d, err = cs.AppsV1().Deployments("shop").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if w := strings.Join(warn.take(), "\n"); !strings.Contains(w, "injected anew") {
			t.Errorf("updating the annotation: warnings %q, want one saying the pods get a new agent", w)
		}
		got, p := podUpstream(d)
		if got != "fluentd-new.logging:24224" {
			t.Errorf("pod after the change: upstream %q, want fluentd-new.logging:24224", got)
		}
		if n := len(p.Spec.InitContainers); n != 1 {
			t.Errorf("pod after the change has %d init containers, want the one new agent", n)
		}

		d.Spec.Template.Annotations[injector.AnnotationInject] = "false"
		if d, err = cs.AppsV1().Deployments("shop").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, p := podUpstream(d); got != "" || len(p.Spec.Volumes) != 1 || p.Labels[injector.LabelInjected] != "" {
			t.Errorf("pod after inject: \"false\": agent upstream %q, volumes %d, labels %v; want no agent and only the app's volume", got, len(p.Spec.Volumes), p.Labels)
		}
	})
}

// warnedClient is a clientset whose API server warnings go to w.
func warnedClient(tb testing.TB, kubeconfig string, w *warnings) kubernetes.Interface {
	tb.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.WarningHandler = w
	return kubernetes.NewForConfigOrDie(cfg)
}

// get returns the status and body of a GET, or 0 and the error.
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
