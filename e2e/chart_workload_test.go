package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/internal/localpod"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/webhook"
)

// TestChartWorkloadIdentity installs the chart and runs the webhook as its Deployment would, with
// the chart's ServiceAccount and RBAC (TestChartWebhook does the same for a Deployment's pod
// shipping over the forward protocol). Through the real API server:
//
//   - a CronJob's Job's pod, created as the CronJob and Job controllers would (no controllers run
//     here), comes back with an agent told its Job, its CronJob and its namespace's labels, and
//     that agent ships the pod's lines over OTLP to the Collector's otlpreceiver with
//     k8s.cronjob.name, k8s.job.name and k8s.namespace.label.<key> on the resource;
//   - a Deployment injected offline by `sidelog inject` (GitOps) makes pods that the webhook does
//     not inject anew (same status) but completes with their ReplicaSet and namespace labels;
//   - the ServiceAccount may read ReplicaSets and Jobs, and change none.
func TestChartWorkloadIdentity(t *testing.T) {
	h := newHelm(t)
	env, _ := chartControlPlane(t)
	h.kubeconfig = adminKubeconfig(t, env)
	admin := clientsetFor(t, h.kubeconfig)
	ctx := context.Background()

	addr := freeAddr(t)
	_, port := splitHostPort(t, addr)
	_, agentPort := splitHostPort(t, freeAddr(t))
	otlpRecv := startOTLPReceiver(t, true, nil)
	h.must(t, "install", chartRelease, chartDir, "-n", ownNS, "--create-namespace",
		"--set", "webhook.url=https://"+addr+webhook.Path,
		"--set", "policy.upstream[0]=fluentd.logging:24224",
		"--set", "policy.metricsPort="+strconv.Itoa(agentPort))
	dep, err := admin.AppsV1().Deployments(ownNS).Get(ctx, "sidelog-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saKubeconfig := userKubeconfig(t, env, envtest.User{
		Name:   "system:serviceaccount:" + ownNS + ":" + dep.Spec.Template.Spec.ServiceAccountName,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ownNS},
	})
	wh := startChartWebhook(t, admin, dep, port, saKubeconfig)

	const ns = "reports"
	nsLabels := map[string]string{webhook.NamespaceLabel: webhook.NamespaceLabelEnabled, "team": "data", "cost-center": "cc-42"}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: nsLabels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantNSLabels := map[string]string{corev1.LabelMetadataName: ns}
	for k, v := range nsLabels {
		wantNSLabels[k] = v
	}

	t.Run("its RBAC reads ReplicaSets and Jobs, and changes none", func(t *testing.T) {
		sa := clientsetFor(t, saKubeconfig)
		if _, err := sa.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			t.Errorf("list ReplicaSets: %v", err)
		}
		if _, err := sa.BatchV1().Jobs("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			t.Errorf("list Jobs: %v", err)
		}
		for _, tt := range []struct {
			what string
			call func() error
		}{
			{"create a Job", func() error {
				_, err := sa.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
				return err
			}},
			{"delete ReplicaSets", func() error {
				return sa.AppsV1().ReplicaSets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			}},
			{"list Deployments", func() error { _, err := sa.AppsV1().Deployments("").List(ctx, metav1.ListOptions{}); return err }},
			{"list CronJobs", func() error { _, err := sa.BatchV1().CronJobs("").List(ctx, metav1.ListOptions{}); return err }},
			{"get a pod", func() error { _, err := sa.CoreV1().Pods(ns).Get(ctx, "x", metav1.GetOptions{}); return err }},
		} {
			if err := tt.call(); !apierrors.IsForbidden(err) {
				t.Errorf("the webhook's ServiceAccount may %s: %v, want Forbidden", tt.what, err)
			}
		}
	})

	t.Run("a CronJob's Job's pod ships over OTLP naming its CronJob", func(t *testing.T) {
		logDir := t.TempDir()
		cron, err := admin.BatchV1().CronJobs(ns).Create(ctx, nightlyCronJob(logDir, otlpRecv.URL), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// As the CronJob controller makes it: named after the schedule, owned by the CronJob.
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{
				Name: cron.Name + "-29410560", Namespace: ns,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cron, batchv1.SchemeGroupVersion.WithKind("CronJob"))},
			},
			Spec: *cron.Spec.JobTemplate.Spec.DeepCopy(),
		}
		if job, err = admin.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// As the Job controller makes it, at once: the webhook's cache may not have the Job yet.
		tmpl := job.Spec.Template.DeepCopy()
		pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: job.Name + "-", Namespace: ns, Labels: tmpl.Labels, Annotations: tmpl.Annotations,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
			},
			Spec: tmpl.Spec,
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating the Job's pod: %v\nwebhook log:\n%s", err, wh.output)
		}
		agent, err := localpod.Container(pod, injector.AgentContainer)
		if err != nil {
			t.Fatalf("%v\nwebhook log:\n%s", err, wh.output)
		}
		cfg := agentConfig(t, agent)
		wantOwners := []config.Owner{{Kind: "Job", Name: job.Name}, {Kind: "CronJob", Name: cron.Name}}
		if !slices.Equal(cfg.Owners, wantOwners) {
			t.Errorf("agent owners = %v, want %v\nwebhook log:\n%s", cfg.Owners, wantOwners, wh.output)
		}

		proc := runInjectedAgent(t, pod, map[string]string{"work": logDir})
		lines := numbered("report", 0, 200)
		appendFile(t, filepath.Join(logDir, "report.log"), lines...)
		eventually(t, 2*time.Minute, fmt.Sprintf("%d records at the otlpreceiver", len(lines)), func() error {
			if n := len(otlpRecv.kept()); n < len(lines) {
				return fmt.Errorf("%d records", n)
			}
			return nil
		})
		if err := proc.stop(t); err != nil {
			t.Errorf("agent exit after SIGTERM = %v, want 0\n%s", err, proc.output)
		}
		want := map[string]any{
			"k8s.namespace.name": ns, "k8s.pod.name": pod.Name, "k8s.pod.uid": string(pod.UID), "k8s.container.name": "report",
			"k8s.job.name": job.Name, "k8s.cronjob.name": cron.Name,
			"sidelog.workload.kind": "CronJob", "sidelog.workload.name": cron.Name,
		}
		for k, v := range pod.Labels {
			want["k8s.pod.label."+k] = v
		}
		for k, v := range wantNSLabels {
			want["k8s.namespace.label."+k] = v
		}
		var got []string
		for _, r := range otlpRecv.kept() {
			got = append(got, fmt.Sprint(r.Body))
			if diff := cmp.Diff(want, r.Resource); diff != "" {
				t.Fatalf("record %q: resource (-want +got):\n%s", r.Body, diff)
			}
		}
		if diff := cmp.Diff(lines, got); diff != "" {
			t.Errorf("records, lost (-) or duplicated (+):\n%s", diff)
		}
	})

	t.Run("a Deployment from sidelog inject is completed, not injected anew", func(t *testing.T) {
		// The chart's policy, so that the template's digest is the webhook's.
		cm, err := admin.CoreV1().ConfigMaps(ownNS).Get(ctx, "sidelog-policy", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		policyFile, manifestFile := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "deploy.yaml")
		logDir, apiDir := t.TempDir(), t.TempDir()
		d := appDeployment(logDir, apiDir)
		d.APIVersion, d.Kind, d.Namespace = "apps/v1", "Deployment", ns
		manifest, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		for path, data := range map[string]string{policyFile: cm.Data["policy.yaml"], manifestFile: string(manifest)} {
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command(binary(t, "sidelog"), "inject", "-f", manifestFile, "--policy", policyFile).Output()
		if err != nil {
			t.Fatalf("sidelog inject: %v\n%s", err, out)
		}
		injected := &appsv1.Deployment{}
		if err := yaml.Unmarshal(out, injected); err != nil {
			t.Fatalf("decoding sidelog inject's output: %v\n%s", err, out)
		}
		offline := agentConfig(t, mustAgent(t, injected.Spec.Template.Spec))
		if want := []config.Owner{{Kind: "Deployment", Name: d.Name}}; !slices.Equal(offline.Owners, want) || offline.NamespaceLabels != nil {
			t.Errorf("sidelog inject wrote owners %v and namespace labels %v, want %v and none (not known offline)", offline.Owners, offline.NamespaceLabels, want)
		}
		created, err := admin.AppsV1().Deployments(ns).Create(ctx, injected, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := admin.AppsV1().ReplicaSets(ns).Create(ctx, replicaSetOf(created), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod, err := admin.CoreV1().Pods(ns).Create(ctx, podOf(rs), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating the pod: %v\nwebhook log:\n%s", err, wh.output)
		}
		if got, want := pod.Annotations[injector.AnnotationStatus], injected.Spec.Template.Annotations[injector.AnnotationStatus]; got != want {
			t.Errorf("the webhook injected the pod anew: status %s, the template's %s", got, want)
		}
		agent := mustAgent(t, pod.Spec)
		cfg := agentConfig(t, agent)
		wantOwners := []config.Owner{{Kind: "ReplicaSet", Name: rs.Name}, {Kind: "Deployment", Name: d.Name}}
		if !slices.Equal(cfg.Owners, wantOwners) {
			t.Errorf("agent owners = %v, want %v\nwebhook log:\n%s", cfg.Owners, wantOwners, wh.output)
		}
		if diff := cmp.Diff(wantNSLabels, cfg.NamespaceLabels); diff != "" {
			t.Errorf("agent namespace labels (-want +got):\n%s", diff)
		}
		// Nothing else of the agent changed: its configuration but for the workload, and the
		// container but for that variable.
		cfg.Owners, cfg.NamespaceLabels = offline.Owners, offline.NamespaceLabels
		if diff := cmp.Diff(offline, cfg); diff != "" {
			t.Errorf("the agent's configuration changed beyond its workload (-template +pod):\n%s", diff)
		}
		tmplAgent := mustAgent(t, created.Spec.Template.Spec) // with the API server's defaults, as the pod's
		strip := func(c *corev1.Container) *corev1.Container {
			c = c.DeepCopy()
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == config.Env })
			return c
		}
		if diff := cmp.Diff(strip(tmplAgent), strip(agent)); diff != "" {
			t.Errorf("the agent container changed beyond %s (-template +pod):\n%s", config.Env, diff)
		}
	})
}

// nightlyCronJob is a CronJob whose container "report" writes to an emptyDir mounted at logDir,
// shipped over OTLP to url.
func nightlyCronJob(logDir, url string) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
		Spec: batchv1.CronJobSpec{
			Schedule: "0 3 * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](0),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{
						Labels: map[string]string{"app.kubernetes.io/name": "nightly-report"},
						Annotations: map[string]string{
							injector.AnnotationTail + ".report": logDir + "/*.log",
							injector.AnnotationUpstreamProtocol: config.ProtocolOTLP,
							injector.AnnotationUpstream:         url,
						},
					},
					Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicyNever,
						Containers: []corev1.Container{{
							Name: "report", Image: "ghcr.io/example/report:1.0",
							VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: logDir}},
						}},
						Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
					},
				},
			}},
		},
	}
}

func mustAgent(t *testing.T, spec corev1.PodSpec) *corev1.Container {
	t.Helper()
	c, err := localpod.Container(&corev1.Pod{Spec: spec}, injector.AgentContainer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWorkloadWithoutRBAC: a webhook whose RBAC predates owner lookups (namespaces only, as an
// upgraded binary with the old chart's ClusterRole) is ready at once and admits a Deployment's
// pod injected, naming its ReplicaSet as the workload, with a warning that says why: a lookup
// that fails never refuses a pod nor holds the webhook back.
func TestWorkloadWithoutRBAC(t *testing.T) {
	t.Run("owner lookup on", func(t *testing.T) { testWorkloadWithoutRBAC(t, false) })
	// What the chart's ownerLookup: false runs: no lookup, no warning, the same owners.
	t.Run("owner lookup off", func(t *testing.T) { testWorkloadWithoutRBAC(t, true) })
}

func testWorkloadWithoutRBAC(t *testing.T, noLookup bool) {
	hook := webhook.Configuration("sidelog", ownNS, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil))
	env, cfg := controlPlane(t, hook)
	admin := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "sidelog-old"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sidelog-old"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "sidelog-old"}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "sidelog-old"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wo := env.WebhookInstallOptions
	metricsURL := startWebhook(t, user.Config(), webhook.Options{Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir, NoOwnerLookup: noLookup})
	failedBefore := failedLookups(t, metricsURL)

	createNamespace(t, admin, "shop", true, map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"})
	cfgW := rest.CopyConfig(cfg)
	warn := &warnings{}
	cfgW.WarningHandler = warn
	cs := kubernetes.NewForConfigOrDie(cfgW)
	logDir, apiDir := t.TempDir(), t.TempDir()
	d, err := admin.AppsV1().Deployments("shop").Create(ctx, appDeployment(logDir, apiDir), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := admin.AppsV1().ReplicaSets("shop").Create(ctx, replicaSetOf(d), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	eventually(t, 60*time.Second, "the API server to call the webhook", func() error {
		if pod, err = cs.CoreV1().Pods("shop").Create(ctx, podOf(rs), metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := localpod.Container(pod, injector.AgentContainer); err != nil {
			return err
		}
		return nil
	})
	cfgAgent := agentConfig(t, mustAgent(t, pod.Spec))
	if want := []config.Owner{{Kind: "ReplicaSet", Name: rs.Name}}; !slices.Equal(cfgAgent.Owners, want) || cfgAgent.NamespaceLabels["kubernetes.io/metadata.name"] != "shop" {
		t.Errorf("agent owners %v, namespace labels %v; want %v and the namespace's labels", cfgAgent.Owners, cfgAgent.NamespaceLabels, want)
	}
	ws := warn.take()
	warned := slices.ContainsFunc(ws, func(w string) bool {
		return strings.Contains(w, "the owner of ReplicaSet "+rs.Name+" could not be read") && strings.Contains(w, "forbidden")
	})
	if warned == noLookup {
		t.Errorf("warnings %q: one saying the ReplicaSet's owner could not be read is there: %v, want %v", ws, warned, !noLookup)
	}
	if v := failedLookups(t, metricsURL) - failedBefore; (v >= 1) == noLookup {
		t.Errorf("owner_lookups_total{result=failed} went up by %v, want the failed lookup counted only with the lookup on (on: %v)", v, !noLookup)
	}
}

// failedLookups is the webhook's count of owner lookups that failed (the metrics are the
// process's: what an earlier test's webhook counted is there too).
func failedLookups(t *testing.T, metricsURL string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	v, ok := metricValue(string(body), `sidelog_webhook_owner_lookups_total{result="failed"}`)
	if !ok {
		t.Fatal("no sidelog_webhook_owner_lookups_total{result=\"failed\"} series")
	}
	return v
}
