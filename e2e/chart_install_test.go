package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidelog/sidelog/injector"
)

// TestChartInstall installs the chart with helm into a real API server in both TLS modes,
// upgrades it from one to the other and uninstalls it, checking each time that the server holds
// exactly the release's objects.
func TestChartInstall(t *testing.T) {
	h := newHelm(t)
	env, c := chartControlPlane(t, certManagerCRDs(t))
	h.kubeconfig = adminKubeconfig(t, env)
	ctx := context.Background()

	install := func(t *testing.T, verb, release, ns string, flags ...string) []runtime.Object {
		t.Helper()
		args := append([]string{verb, release, chartDir, "-n", ns}, flags...)
		if verb == "install" {
			args = append(args, "--create-namespace")
		}
		out := h.must(t, args...)
		if !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "kubectl label namespace NAMESPACE sidelog.io/inject=enabled") {
			t.Errorf("helm %s output, want deployed and the NOTES:\n%s", verb, out)
		}
		objs := decodeManifest(t, []byte(h.must(t, "get", "manifest", release, "-n", ns)))
		checkOnServer(t, c, objs)
		return objs
	}

	var all []runtime.Object // every object any revision of the release had
	t.Run("install self-managed", func(t *testing.T) {
		objs := install(t, "install", chartRelease, ownNS)
		all = append(all, objs...)
		if got := kindsAndNames(objs); !slices.Contains(got, "Secret/sidelog-webhook-certs") || slices.Contains(got, "Certificate/sidelog-webhook") {
			t.Errorf("self-managed objects = %v", got)
		}
	})
	t.Run("upgrade: changed values reach the server", func(t *testing.T) {
		install(t, "upgrade", chartRelease, ownNS, "--set", "timeoutSeconds=7", "--set", "replicas=3",
			"--set", "policy.upstream[0]=fluentd.logging:24224")
		hook := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: chartRelease}, hook); err != nil {
			t.Fatal(err)
		}
		dep := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ownNS, Name: "sidelog-webhook"}, dep); err != nil {
			t.Fatal(err)
		}
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ownNS, Name: "sidelog-policy"}, cm); err != nil {
			t.Fatal(err)
		}
		p, err := injector.ParsePolicy([]byte(cm.Data["policy.yaml"]))
		if *hook.Webhooks[0].TimeoutSeconds != 7 || *dep.Spec.Replicas != 3 || err != nil || !slices.Equal(p.Upstream, []string{"fluentd.logging:24224"}) {
			t.Errorf("after upgrade: timeoutSeconds %d, replicas %d, policy upstream %v (%v); want 7, 3, [fluentd.logging:24224]",
				*hook.Webhooks[0].TimeoutSeconds, *dep.Spec.Replicas, p.Upstream, err)
		}
	})
	t.Run("upgrade to cert-manager", func(t *testing.T) {
		objs := install(t, "upgrade", chartRelease, ownNS, "--reuse-values", "--set", "certManager.enabled=true")
		all = append(all, objs...)
		checkCertManagerOnServer(t, c, objs)
		for _, gone := range []client.Object{
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ownNS, Name: "sidelog-webhook-certs"}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ownNS, Name: "sidelog-webhook"}},
		} {
			if err := c.Get(ctx, client.ObjectKeyFromObject(gone), gone); !apierrors.IsNotFound(err) {
				t.Errorf("%T %s after the switch to cert-manager: %v, want it deleted", gone, gone.GetName(), err)
			}
		}
	})
	t.Run("uninstall", func(t *testing.T) {
		h.must(t, "uninstall", chartRelease, "-n", ownNS)
		checkGone(t, c, all)
	})
	t.Run("install cert-manager, uninstall", func(t *testing.T) {
		// Another release in another namespace: every name, cluster-scoped ones too, follows it.
		objs := install(t, "install", "logs", "logging", chartCertManager...)
		checkCertManagerOnServer(t, c, objs)
		hook := objectOf[*admissionregistrationv1.MutatingWebhookConfiguration](t, objs)
		if hook.Name != "logs-sidelog" || hook.Webhooks[0].NamespaceSelector.MatchExpressions[1].Values[1] != "logging" {
			t.Errorf("release logs in logging: webhook configuration %s excludes %v", hook.Name, hook.Webhooks[0].NamespaceSelector.MatchExpressions[1].Values)
		}
		h.must(t, "uninstall", "logs", "-n", "logging")
		checkGone(t, c, objs)
	})
	if out := h.must(t, "list", "--all-namespaces", "--all", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("helm list after uninstall: %q", out)
	}
}

// checkOnServer checks that the API server holds every object.
func checkOnServer(tb testing.TB, c client.Client, objs []runtime.Object) {
	tb.Helper()
	for _, o := range objs {
		u := asUnstructured(tb, o)
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(u), u); err != nil {
			tb.Errorf("%s %s/%s on the server: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// checkGone checks that the API server holds none of the objects.
func checkGone(tb testing.TB, c client.Client, objs []runtime.Object) {
	tb.Helper()
	for _, o := range objs {
		u := asUnstructured(tb, o)
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(u), u); !apierrors.IsNotFound(err) {
			tb.Errorf("%s %s/%s after helm uninstall: %v, want it deleted", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// checkCertManagerOnServer reads the Issuers and Certificates back and compares their specs with
// the rendered ones: a field that the CRD's schema pruned would show here.
func checkCertManagerOnServer(tb testing.TB, c client.Client, objs []runtime.Object) {
	tb.Helper()
	if len(objectsOf[*certmanagerv1.Certificate](objs)) != 2 || len(objectsOf[*certmanagerv1.Issuer](objs)) != 2 {
		tb.Fatalf("release objects %v, want two Certificates and two Issuers", kindsAndNames(objs))
	}
	for _, want := range objectsOf[*certmanagerv1.Certificate](objs) {
		got := &certmanagerv1.Certificate{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(want), got); err != nil {
			tb.Fatal(err)
		}
		if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
			tb.Errorf("Certificate %s: rendered (-) and stored (+) specs differ:\n%s", want.Name, diff)
		}
	}
	for _, want := range objectsOf[*certmanagerv1.Issuer](objs) {
		got := &certmanagerv1.Issuer{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(want), got); err != nil {
			tb.Fatal(err)
		}
		if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
			tb.Errorf("Issuer %s: rendered (-) and stored (+) specs differ:\n%s", want.Name, diff)
		}
	}
}

func asUnstructured(tb testing.TB, o runtime.Object) *unstructured.Unstructured {
	tb.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		tb.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvkOf(o))
	return u
}
