package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/webhook"
)

// These tests render charts/sidelog with the real helm and install it into a real API server.
// cert-manager does not run here: its CRDs, from the cert-manager module these tests build
// against, are installed so that the API server validates the chart's Issuers and Certificates
// against cert-manager's own schemas, and the rendered objects are also decoded strictly with
// cert-manager's Go types, which the CRDs' pruning would not catch.

// chartDir is the chart under test.
const chartDir = "../charts/sidelog"

// chartRelease is the release name of every install: the chart's objects are then named
// "sidelog" (the MutatingWebhookConfiguration) and "sidelog-webhook" (the rest).
const chartRelease = "sidelog"

// chartScheme knows every kind the chart renders.
var chartScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(certmanagerv1.AddToScheme(s))
	return s
}()

// helmCLI runs the helm binary with its caches and configuration in a temporary directory.
type helmCLI struct {
	bin        string
	env        []string
	kubeconfig string
}

// newHelm finds helm in $KUBEBUILDER_ASSETS (../shared/k8s-tools builds it there) or on PATH,
// and skips the test when there is none.
func newHelm(tb testing.TB) *helmCLI {
	tb.Helper()
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "helm")
	if os.Getenv("KUBEBUILDER_ASSETS") == "" || !isFile(bin) {
		var err error
		if bin, err = exec.LookPath("helm"); err != nil {
			tb.Skip(`no helm in $KUBEBUILDER_ASSETS or on PATH: run with ` +
				`KUBEBUILDER_ASSETS="$(../../shared/k8s-tools/install.sh)" go test ./...`)
		}
	}
	home := tb.TempDir()
	env := append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	return &helmCLI{bin: bin, env: env}
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// run runs helm with args and returns its stdout; the error carries its stderr.
func (h *helmCLI) run(args ...string) (string, error) {
	if h.kubeconfig != "" {
		args = append(args, "--kubeconfig", h.kubeconfig)
	}
	cmd := exec.Command(h.bin, args...)
	cmd.Env = h.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (h *helmCLI) must(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := h.run(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// template renders the chart as release chartRelease in ownNS with the given helm flags
// (--set, -f).
func (h *helmCLI) template(tb testing.TB, flags ...string) []runtime.Object {
	tb.Helper()
	out := h.must(tb, append([]string{"template", chartRelease, chartDir, "-n", ownNS}, flags...)...)
	return decodeManifest(tb, []byte(out))
}

// decodeManifest decodes every document of a manifest strictly, with the Go types of the API
// server and of cert-manager: an unknown kind, an unknown or a duplicate field fails the test.
func decodeManifest(tb testing.TB, manifest []byte) []runtime.Object {
	tb.Helper()
	decoder := serializer.NewCodecFactory(chartScheme, serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			tb.Fatalf("reading the manifest: %v", err)
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			tb.Fatalf("manifest document is not YAML: %v\n%s", err, doc)
		}
		if len(probe) == 0 { // only comments
			continue
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			tb.Fatalf("decoding %v strictly: %v\n%s", gvk, err, doc)
		}
		objs = append(objs, obj)
	}
}

// objectsOf returns the objects of type T.
func objectsOf[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// objectOf returns the one object of type T, failing the test unless there is exactly one.
func objectOf[T runtime.Object](tb testing.TB, objs []runtime.Object) T {
	tb.Helper()
	list := objectsOf[T](objs)
	if len(list) != 1 {
		var zero T
		tb.Fatalf("%d objects of type %T, want 1", len(list), zero)
	}
	return list[0]
}

// kindsAndNames lists the objects as Kind/name, sorted.
func kindsAndNames(objs []runtime.Object) []string {
	var out []string
	for _, o := range objs {
		name := "?"
		if m, ok := o.(metav1.Object); ok {
			name = m.GetName()
		}
		out = append(out, gvkOf(o).Kind+"/"+name)
	}
	slices.Sort(out)
	return out
}

func gvkOf(o runtime.Object) schema.GroupVersionKind {
	gvk, err := apiutil.GVKForObject(o, chartScheme)
	if err != nil {
		panic(err) // decodeManifest made o from this scheme
	}
	return gvk
}

// The chart's modes, as helm flags.
var (
	chartSelfManaged = []string{}
	chartCertManager = []string{"--set", "certManager.enabled=true"}
	chartLocalURL    = "https://127.0.0.1:9443" + webhook.Path
)

func TestChartLint(t *testing.T) {
	h := newHelm(t)
	for _, flags := range [][]string{chartSelfManaged, chartCertManager, {"--set", "webhook.url=" + chartLocalURL}} {
		out := h.must(t, append([]string{"lint", "--strict", chartDir}, flags...)...)
		if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm lint %v:\n%s", flags, out)
		}
	}
}

// TestChartObjects checks what each mode renders, and that the names the webhook's flags give
// are the names of the objects the chart creates and grants access to.
func TestChartObjects(t *testing.T) {
	h := newHelm(t)
	common := []string{
		"ClusterRole/sidelog-webhook", "ClusterRole/sidelog-webhook-metrics-reader", "ClusterRoleBinding/sidelog-webhook", "ConfigMap/sidelog-policy",
		"Deployment/sidelog-webhook", "MutatingWebhookConfiguration/sidelog", "PodDisruptionBudget/sidelog-webhook",
		"Service/sidelog-webhook", "ServiceAccount/sidelog-webhook",
	}
	tests := []struct {
		name        string
		flags       []string
		certManager bool
		extra       []string
		serviceName string // --service-name, self-managed only
		certHost    string // --cert-host, self-managed with webhook.url only
	}{
		{"self-managed", chartSelfManaged, false,
			[]string{"Role/sidelog-webhook", "RoleBinding/sidelog-webhook", "Secret/sidelog-webhook-certs"}, "sidelog-webhook", ""},
		{"self-managed, webhook.url", []string{"--set", "webhook.url=" + chartLocalURL}, false,
			[]string{"Role/sidelog-webhook", "RoleBinding/sidelog-webhook", "Secret/sidelog-webhook-certs"}, "sidelog-webhook", "127.0.0.1"},
		{"cert-manager", chartCertManager, true,
			[]string{"Certificate/sidelog-ca", "Certificate/sidelog-webhook", "Issuer/sidelog-ca", "Issuer/sidelog-selfsigned"}, "", ""},
		{"cert-manager, webhook.url", append([]string{"--set", "webhook.url=" + chartLocalURL}, chartCertManager...), true,
			[]string{"Certificate/sidelog-ca", "Certificate/sidelog-webhook", "Issuer/sidelog-ca", "Issuer/sidelog-selfsigned"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := h.template(t, tt.flags...)
			want := slices.Sorted(slices.Values(append(slices.Clone(common), tt.extra...)))
			if diff := cmp.Diff(want, kindsAndNames(objs)); diff != "" {
				t.Fatalf("rendered objects (-want +got):\n%s", diff)
			}

			dep := objectOf[*appsv1.Deployment](t, objs)
			pod := dep.Spec.Template
			c := pod.Spec.Containers[0]
			flags := argFlags(t, c.Args)
			checkRestricted(t, &pod.Spec)
			if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("probes = %+v, %+v; want /readyz and /healthz", c.ReadinessProbe, c.LivenessProbe)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources = %v, want cpu and memory requests and a memory limit", c.Resources)
			}
			if *dep.Spec.Replicas != 2 {
				t.Errorf("replicas = %d, want 2", *dep.Spec.Replicas)
			}
			podLabels := labels.Set(pod.Labels)
			pdb := objectOf[*policyv1.PodDisruptionBudget](t, objs)
			if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !sel.Matches(podLabels) || pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("PodDisruptionBudget selector %v, minAvailable %v: want the webhook's pods and 1", pdb.Spec.Selector, pdb.Spec.MinAvailable)
			}
			spread := pod.Spec.TopologySpreadConstraints
			if len(spread) != 1 || spread[0].TopologyKey != corev1.LabelHostname {
				t.Fatalf("topologySpreadConstraints = %+v, want one over %s", spread, corev1.LabelHostname)
			}
			if sel, err := metav1.LabelSelectorAsSelector(spread[0].LabelSelector); err != nil || !sel.Matches(podLabels) {
				t.Errorf("spread selector %v does not select the webhook's pods %v", spread[0].LabelSelector, podLabels)
			}
			svc := objectOf[*corev1.Service](t, objs)
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.StrVal != "webhook" {
				t.Errorf("Service %v selects %v on port %d → %v, want the webhook's pods on 443 → webhook",
					svc.Name, svc.Spec.Selector, svc.Spec.Ports[0].Port, svc.Spec.Ports[0].TargetPort)
			}
			if pod.Spec.ServiceAccountName != objectOf[*corev1.ServiceAccount](t, objs).Name {
				t.Errorf("serviceAccountName = %q, not the chart's ServiceAccount", pod.Spec.ServiceAccountName)
			}

			// The policy file is the ConfigMap's key, mounted as a directory.
			cm := objectOf[*corev1.ConfigMap](t, objs)
			policyMount := mountOf(t, &c, &pod.Spec, func(v corev1.Volume) bool { return v.ConfigMap != nil && v.ConfigMap.Name == cm.Name })
			if want := policyMount.MountPath + "/policy.yaml"; flags["policy"] != want || policyMount.SubPath != "" {
				t.Errorf("--policy = %q with mount %+v, want %s from a directory mount", flags["policy"], policyMount, want)
			}
			if _, ok := cm.Data["policy.yaml"]; !ok {
				t.Errorf("ConfigMap %s has no policy.yaml: %v", cm.Name, slices.Collect(maps.Keys(cm.Data)))
			}
			if flags["namespace"] != "$(POD_NAMESPACE)" || c.Env[0].Name != "POD_NAMESPACE" || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
				t.Errorf("--namespace = %q, env %+v: want $(POD_NAMESPACE) from metadata.namespace", flags["namespace"], c.Env)
			}

			hook := objectOf[*admissionregistrationv1.MutatingWebhookConfiguration](t, objs)
			var role *rbacv1.ClusterRole
			for _, r := range objectsOf[*rbacv1.ClusterRole](objs) {
				if r.Name == "sidelog-webhook" {
					role = r
				}
			}
			certMount := mountOf(t, &c, &pod.Spec, func(v corev1.Volume) bool { return v.Name == "certs" })
			if flags["cert-dir"] != certMount.MountPath {
				t.Errorf("--cert-dir = %q, certificates mounted at %q", flags["cert-dir"], certMount.MountPath)
			}
			namespaces := []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
				// The owners of injected pods' ReplicaSets and Jobs: their Deployments and CronJobs.
				{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch"}},
			}
			reviews := []rbacv1.PolicyRule{ // secure metrics, the default
				{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
				{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
			}
			if tt.certManager {
				if flags["cert-mode"] != "external" {
					t.Errorf("--cert-mode = %q, want external", flags["cert-mode"])
				}
				if diff := cmp.Diff(append(namespaces, reviews...), role.Rules); diff != "" {
					t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
				}
				checkCertManager(t, objs, certMount)
				return
			}
			for flag, want := range map[string]string{
				"cert-mode":           "self-managed",
				"secret-name":         objectOf[*corev1.Secret](t, objs).Name,
				"webhook-config-name": hook.Name,
				"service-name":        tt.serviceName,
				"cert-host":           tt.certHost,
			} {
				if flags[flag] != want {
					t.Errorf("--%s = %q, want %q", flag, flags[flag], want)
				}
			}
			if certMount.ReadOnly || pod.Spec.Volumes[slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "certs" })].EmptyDir == nil {
				t.Errorf("self-managed certificates need a writable emptyDir at %s: %+v", certMount.MountPath, certMount)
			}
			wantRules := append(append(slices.Clone(namespaces), reviews...), rbacv1.PolicyRule{
				APIGroups: []string{admissionregistrationv1.GroupName}, Resources: []string{"mutatingwebhookconfigurations"},
				ResourceNames: []string{hook.Name}, Verbs: []string{"get", "patch"},
			})
			if diff := cmp.Diff(wantRules, role.Rules); diff != "" {
				t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
			}
			secretRules := []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"secrets"},
				ResourceNames: []string{flags["secret-name"]}, Verbs: []string{"get", "update"},
			}}
			if diff := cmp.Diff(secretRules, objectOf[*rbacv1.Role](t, objs).Rules); diff != "" {
				t.Errorf("Role rules (-want +got):\n%s", diff)
			}
			if s := objectOf[*corev1.Secret](t, objs); len(s.Data)+len(s.StringData) != 0 || s.Type != corev1.SecretTypeOpaque {
				t.Errorf("Secret %s: type %s with %d keys, want an empty Opaque Secret for the webhook to fill", s.Name, s.Type, len(s.Data))
			}
		})
	}
}

// argFlags returns the --name=value flags of args by name; a flag given twice fails the test.
func argFlags(tb testing.TB, args []string) map[string]string {
	tb.Helper()
	flags := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !ok {
			tb.Fatalf("argument %q: want --name=value", a)
		}
		if _, dup := flags[name]; dup {
			tb.Fatalf("flag --%s given twice", name)
		}
		flags[name] = value
	}
	return flags
}

// mountOf returns c's mount of the volume that is.
func mountOf(tb testing.TB, c *corev1.Container, spec *corev1.PodSpec, is func(corev1.Volume) bool) corev1.VolumeMount {
	tb.Helper()
	i := slices.IndexFunc(spec.Volumes, is)
	if i < 0 {
		tb.Fatalf("no such volume in %+v", spec.Volumes)
	}
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == spec.Volumes[i].Name })
	if j < 0 {
		tb.Fatalf("container %s does not mount volume %s", c.Name, spec.Volumes[i].Name)
	}
	return c.VolumeMounts[j]
}

// checkRestricted checks the pod against the Pod Security Standards' restricted profile, and a
// read-only root file system.
func checkRestricted(tb testing.TB, spec *corev1.PodSpec) {
	tb.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		tb.Errorf("pod securityContext = %+v, want runAsNonRoot, a non-zero runAsUser and RuntimeDefault seccomp", psc)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			tb.Errorf("container %s securityContext = %+v, want no privilege escalation, a read-only root and all capabilities dropped", c.Name, sc)
		}
	}
}

// checkCertManager follows the chain self-signed Issuer → CA Certificate → CA Issuer → serving
// Certificate → the Secret the Deployment mounts, and the CA injection into the webhook
// configuration.
func checkCertManager(tb testing.TB, objs []runtime.Object, certMount corev1.VolumeMount) {
	tb.Helper()
	issuers := map[string]*certmanagerv1.Issuer{}
	for _, i := range objectsOf[*certmanagerv1.Issuer](objs) {
		issuers[i.Name] = i
	}
	var ca, serving *certmanagerv1.Certificate
	for _, c := range objectsOf[*certmanagerv1.Certificate](objs) {
		if c.Spec.IsCA {
			ca = c
		} else {
			serving = c
		}
	}
	if ca == nil || serving == nil {
		tb.Fatalf("want a CA and a serving Certificate, got %v", kindsAndNames(objs))
	}
	if i := issuers[ca.Spec.IssuerRef.Name]; i == nil || i.Spec.SelfSigned == nil {
		tb.Errorf("CA Certificate issued by %q, want a self-signed Issuer", ca.Spec.IssuerRef.Name)
	}
	if i := issuers[serving.Spec.IssuerRef.Name]; i == nil || i.Spec.CA == nil || i.Spec.CA.SecretName != ca.Spec.SecretName {
		tb.Errorf("serving Certificate issued by %q, want a CA Issuer of Secret %s", serving.Spec.IssuerRef.Name, ca.Spec.SecretName)
	}
	dep := objectOf[*appsv1.Deployment](tb, objs)
	vol := dep.Spec.Template.Spec.Volumes[slices.IndexFunc(dep.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == certMount.Name })]
	if vol.Secret == nil || vol.Secret.SecretName != serving.Spec.SecretName || !certMount.ReadOnly {
		tb.Errorf("certificates volume %+v, want Secret %s read-only", vol, serving.Spec.SecretName)
	}
	svc := objectOf[*corev1.Service](tb, objs)
	if want := svc.Name + "." + svc.Namespace + ".svc"; !slices.Contains(serving.Spec.DNSNames, want) {
		tb.Errorf("serving Certificate dnsNames = %v, want %s (the name the API server verifies)", serving.Spec.DNSNames, want)
	}
	hook := objectOf[*admissionregistrationv1.MutatingWebhookConfiguration](tb, objs)
	if want := serving.Namespace + "/" + serving.Name; hook.Annotations[certmanagerv1.WantInjectAnnotation] != want {
		tb.Errorf("%s = %q, want %q", certmanagerv1.WantInjectAnnotation, hook.Annotations[certmanagerv1.WantInjectAnnotation], want)
	}
	if url := hook.Webhooks[0].ClientConfig.URL; url != nil && !slices.Contains(serving.Spec.IPAddresses, "127.0.0.1") {
		tb.Errorf("webhook.url %s: serving Certificate ipAddresses = %v, want its host", *url, serving.Spec.IPAddresses)
	}
}

// TestChartWebhookConfiguration compares the chart's MutatingWebhookConfiguration with
// webhook.Configuration, which the other e2e tests register, so that the two cannot drift.
func TestChartWebhookConfiguration(t *testing.T) {
	h := newHelm(t)
	tests := []struct {
		name  string
		flags []string
		want  admissionregistrationv1.WebhookClientConfig
	}{
		{"through the Service", chartSelfManaged, webhook.ServiceClientConfig(ownNS, "sidelog-webhook", nil)},
		{"webhook.url", []string{"--set", "webhook.url=" + chartLocalURL}, admissionregistrationv1.WebhookClientConfig{URL: &chartLocalURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := objectOf[*admissionregistrationv1.MutatingWebhookConfiguration](t, h.template(t, tt.flags...))
			want := webhook.Configuration(chartRelease, ownNS, tt.want)
			// The chart's labels are its own; everything else, default values included, must be
			// what the other e2e tests register.
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(metav1.ObjectMeta{}, "Labels")); diff != "" {
				t.Errorf("chart (+) and webhook.Configuration (-) differ:\n%s", diff)
			}
		})
	}

	for _, tt := range []struct {
		flags   []string
		timeout int32
		policy  admissionregistrationv1.FailurePolicyType
	}{
		{[]string{"--set", "timeoutSeconds=2"}, 2, admissionregistrationv1.Fail},
		{[]string{"--set", "failurePolicy=Ignore"}, 5, admissionregistrationv1.Ignore},
	} {
		wh := objectOf[*admissionregistrationv1.MutatingWebhookConfiguration](t, h.template(t, tt.flags...)).Webhooks[0]
		if *wh.TimeoutSeconds != tt.timeout || *wh.FailurePolicy != tt.policy {
			t.Errorf("%v: timeoutSeconds %d, failurePolicy %s; want %d, %s", tt.flags, *wh.TimeoutSeconds, *wh.FailurePolicy, tt.timeout, tt.policy)
		}
	}
}

// TestChartPolicy renders values.policy into the ConfigMap and reads it back as the webhook
// does, with injector.ParsePolicy: the chart's defaults, and examples/policy.yaml, which sets
// every field.
func TestChartPolicy(t *testing.T) {
	h := newHelm(t)
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Policy map[string]any }
	if err := yaml.Unmarshal(values, &v); err != nil {
		t.Fatal(err)
	}
	defaults, err := yaml.Marshal(v.Policy)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var examplePolicy map[string]any
	if err := yaml.Unmarshal(example, &examplePolicy); err != nil {
		t.Fatal(err)
	}
	exampleValues := filepath.Join(t.TempDir(), "values.yaml")
	b, err := yaml.Marshal(map[string]any{"policy": examplePolicy})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exampleValues, b, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name   string
		flags  []string
		source []byte // what the rendered policy must mean
	}{
		{"values.yaml", nil, defaults},
		{"examples/policy.yaml", []string{"-f", exampleValues}, example},
		{"no policy (policy=null): the built-in one", []string{"--set", "policy=null"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cm := objectOf[*corev1.ConfigMap](t, h.template(t, tt.flags...))
			got, err := injector.ParsePolicy([]byte(cm.Data["policy.yaml"]))
			if err != nil {
				t.Fatalf("rendered policy:\n%s\ninjector.ParsePolicy: %v", cm.Data["policy.yaml"], err)
			}
			want, err := injector.ParsePolicy(tt.source)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rendered policy (-want +got):\n%s", diff)
			}
		})
	}
	if p, _ := injector.ParsePolicy(defaults); p.AgentImage == injector.DefaultAgentImage {
		t.Errorf("the chart's policy uses %s: pin the agent image to a release", p.AgentImage)
	}
}

// TestChartSchemaKnowsThePolicy checks that values.schema.json names exactly the fields of
// injector.Policy (and of its agentLimits): a field added to one must be added to the other.
func TestChartSchemaKnowsThePolicy(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	type props struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	var schema struct {
		Properties struct {
			Policy struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"policy"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	var limits props
	if err := json.Unmarshal(schema.Properties.Policy.Properties["agentLimits"], &limits); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		schema map[string]json.RawMessage
		typ    reflect.Type
	}{
		{"policy", schema.Properties.Policy.Properties, reflect.TypeFor[injector.Policy]()},
		{"policy.agentLimits", limits.Properties, reflect.TypeFor[config.Limits]()},
	} {
		if diff := cmp.Diff(jsonFields(tt.typ), slices.Sorted(maps.Keys(tt.schema))); diff != "" {
			t.Errorf("%s: fields of %s (-) and of values.schema.json (+) differ:\n%s", tt.name, tt.typ, diff)
		}
	}
}

func jsonFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "-" && name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// TestChartRejectsBadValues: every mistake fails helm template with the value's path and what
// is wrong, before anything reaches a cluster.
func TestChartRejectsBadValues(t *testing.T) {
	h := newHelm(t)
	tests := []struct {
		set  string
		want string
	}{
		{"failurePolicy=Never", "at '/failurePolicy': value must be one of 'Fail', 'Ignore'"},
		{"timeoutSeconds=31", "at '/timeoutSeconds': maximum: got 31, want 30"},
		{"replicas=0", "at '/replicas': minimum: got 0, want 1"},
		{"replica=3", "additional properties 'replica' not allowed"},
		{"webhook.url=http://127.0.0.1:9443/mutate-v1-pod", "at '/webhook/url': 'http://127.0.0.1:9443/mutate-v1-pod' does not match pattern"},
		{"webhook.url=https://127.0.0.1:9443/mutate-v1-pod?x=1", "webhook.url: \"https://127.0.0.1:9443/mutate-v1-pod?x=1\": want https://HOST[:PORT]/PATH with no user, query or fragment"},
		{"webhook.port=8081", "webhook.port: 8081 is taken by the webhook's metrics (8443) or health (8081) endpoint"},
		{"webhook.port=80", "at '/webhook/port': minimum: got 80, want 1,024"},
		{"certManager.duration=90d", "at '/certManager/duration': '90d' does not match pattern"},
		{"selfManaged.certLifetime=9000h", "selfManaged.caLifetime (8760h) must be longer than selfManaged.certLifetime (9000h)"},
		{"policy.upstreams[0]=fluentd:24224", "at '/policy': additional properties 'upstreams' not allowed"},
		{"policy.upstream[0]=fluentd", "at '/policy/upstream/0': 'fluentd' does not match pattern"},
		{"policy.upstream[0]=grpc://otel:4317", "at '/policy/upstream/0': 'grpc://otel:4317' does not match pattern"},
		{"policy.upstreamProtocol=grpc", "at '/policy/upstreamProtocol': value must be one of"},
		{"policy.upstreamHeaders=otel/token", "at '/policy/upstreamHeaders': 'otel/token' does not match pattern"},
		{"policy.sidecarMode=sidecar", "at '/policy/sidecarMode': value must be one of '', 'native', 'legacy', 'auto'"},
		{"policy.missingVolume=hostPath", "at '/policy/missingVolume': value must be one of '', 'refuse', 'emptyDir'"},
		{"policy.allowPodOverride[0]=upstreams", "at '/policy/allowPodOverride/0': value must be one of"},
		{"policy.agentLimits.batchSize=1", "at '/policy/agentLimits': additional properties 'batchSize' not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			_, err := h.run("template", chartRelease, chartDir, "-n", ownNS, "--set", tt.set)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant one containing %q", err, tt.want)
			}
		})
	}
}

// TestChartArgsAreWebhookFlags starts `sidelog webhook` with the Deployment's arguments and -h:
// the flag package stops at the first flag it does not know, so a zero exit means that every
// argument the chart passes is a flag of this build.
func TestChartArgsAreWebhookFlags(t *testing.T) {
	h := newHelm(t)
	bin := binary(t, "sidelog")
	for _, flags := range [][]string{chartSelfManaged, chartCertManager, {"--set", "webhook.url=" + chartLocalURL}} {
		c := objectOf[*appsv1.Deployment](t, h.template(t, flags...)).Spec.Template.Spec.Containers[0]
		if len(c.Command) != 2 || c.Command[0] != "/sidelog" || c.Command[1] != "webhook" {
			t.Fatalf("command = %q, want [/sidelog webhook] (the image's entrypoint)", c.Command)
		}
		cmd := exec.Command(bin, append(c.Command[1:], append(c.Args, "-h")...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%v: sidelog webhook %s -h: %v\n%s", flags, strings.Join(c.Args, " "), err, out)
		}
	}
}

// chartControlPlane starts kube-apiserver and etcd with the CRDs in crdDirs installed, and
// returns a client that knows the chart's kinds.
func chartControlPlane(tb testing.TB, crdDirs ...string) (*envtest.Environment, client.Client) {
	tb.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		tb.Skip(`KUBEBUILDER_ASSETS is unset: these tests need kube-apiserver and etcd; run them with ` +
			`KUBEBUILDER_ASSETS="$(../../shared/k8s-tools/install.sh)" go test ./...`)
	}
	env := &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: crdDirs, ErrorIfPathMissing: true}}
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("starting the control plane: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stopping the control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: chartScheme})
	if err != nil {
		tb.Fatal(err)
	}
	return env, c
}

// adminKubeconfig writes a kubeconfig of a system:masters user, for helm.
func adminKubeconfig(tb testing.TB, env *envtest.Environment) string {
	tb.Helper()
	return userKubeconfig(tb, env, envtest.User{Name: "admin", Groups: []string{"system:masters"}})
}

func userKubeconfig(tb testing.TB, env *envtest.Environment, u envtest.User) string {
	tb.Helper()
	user, err := env.AddUser(u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// certManagerCRDs returns the directory of cert-manager's CRDs in the cert-manager module these
// tests are built with (go.mod pins it), so that they and the Go types agree.
func certManagerCRDs(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		tb.Fatalf("locating the cert-manager module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	for _, crd := range []string{"cert-manager.io_certificates.yaml", "cert-manager.io_issuers.yaml"} {
		if !isFile(filepath.Join(dir, crd)) {
			tb.Fatalf("cert-manager module has no %s in %s", crd, dir)
		}
	}
	return dir
}

// TestChartOwnerLookup: ownerLookup false drops the webhook's RBAC on ReplicaSets and Jobs and
// tells it not to look owners up; the default keeps both.
func TestChartOwnerLookup(t *testing.T) {
	h := newHelm(t)
	for _, tt := range []struct {
		flags  []string
		lookup bool
	}{{nil, true}, {[]string{"--set", "ownerLookup=false"}, false}} {
		objs := h.template(t, tt.flags...)
		var role *rbacv1.ClusterRole
		for _, r := range objectsOf[*rbacv1.ClusterRole](objs) {
			if r.Name == "sidelog-webhook" {
				role = r
			}
		}
		if role == nil {
			t.Fatal("no ClusterRole sidelog-webhook")
		}
		readsOwners := slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.Resources, "replicasets") || slices.Contains(r.Resources, "jobs")
		})
		args := objectOf[*appsv1.Deployment](t, objs).Spec.Template.Spec.Containers[0].Args
		if readsOwners != tt.lookup || slices.Contains(args, "--owner-lookup=false") == tt.lookup {
			t.Errorf("ownerLookup %v: RBAC on replicasets/jobs %v, args %q", tt.lookup, readsOwners, args)
		}
	}
}
