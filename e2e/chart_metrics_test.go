package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/webhook"
)

// TestChartMetrics installs the chart (metrics.secure, the default) and runs the webhook as its
// Deployment does, as its ServiceAccount: /metrics answers over HTTPS only to a token that the
// API server authenticates and that the chart's metrics-reader ClusterRole authorises, which
// also shows that the webhook's own RBAC lets it ask (TokenReview, SubjectAccessReview).
func TestChartMetrics(t *testing.T) {
	h := newHelm(t)
	env, _ := chartControlPlane(t)
	h.kubeconfig = adminKubeconfig(t, env)
	admin := clientsetFor(t, h.kubeconfig)
	ctx := context.Background()
	addr := freeAddr(t)
	_, port := splitHostPort(t, addr)
	h.must(t, "install", chartRelease, chartDir, "-n", ownNS, "--create-namespace", "--set", "webhook.url=https://"+addr+webhook.Path)

	dep, err := admin.AppsV1().Deployments(ownNS).Get(ctx, "sidelog-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa := dep.Spec.Template.Spec.ServiceAccountName
	saKubeconfig := userKubeconfig(t, env, envtest.User{
		Name:   "system:serviceaccount:" + ownNS + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ownNS},
	})
	wh := launchChartWebhookWith(t, admin, dep, port, saKubeconfig, true)
	eventually(t, 90*time.Second, "the webhook ready", func() error {
		if status, body := get(wh.readyURL); status != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", status, body)
		}
		return nil
	})
	metricsURL := strings.Replace(wh.metricsURL, "http://", "https://", 1)

	// Two ServiceAccounts with real tokens: one bound to the chart's metrics-reader.
	token := func(name string) string {
		t.Helper()
		if _, err := admin.CoreV1().ServiceAccounts(ownNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := admin.CoreV1().ServiceAccounts(ownNS).CreateToken(ctx, name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	prometheus, other := token("prometheus"), token("other")
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-sidelog-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "sidelog-webhook-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: ownNS}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the metrics certificate is self-signed, as the ServiceMonitor says
	}}
	scrape := func(token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, metricsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token without the ClusterRole", other, http.StatusForbidden},
		{"a token bound to the metrics-reader ClusterRole", prometheus, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var status int
			var body string
			// RBAC caches settle within a second or two.
			eventually(t, 30*time.Second, fmt.Sprintf("HTTP %d", tt.want), func() error {
				if status, body = scrape(tt.token); status != tt.want {
					return fmt.Errorf("HTTP %d: %.200s", status, body)
				}
				return nil
			})
			if tt.want == http.StatusOK && !strings.Contains(body, "sidelog_webhook_admissions_total") {
				t.Errorf("metrics without sidelog_webhook_admissions_total:\n%.500s", body)
			}
		})
	}
	if status, _ := get(wh.metricsURL); status == http.StatusOK {
		t.Error("/metrics answered over plain HTTP")
	}
}

// TestChartMonitors renders the PodMonitor and the ServiceMonitor (no CRDs needed) and checks
// that they select what they must: the injected pods' agent port, the webhook's metrics port.
func TestChartMonitors(t *testing.T) {
	h := newHelm(t)
	out := h.must(t, "template", chartRelease, chartDir, "-n", ownNS,
		"--set", "metrics.podMonitor.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "metrics.serviceMonitor.labels.release=prometheus")
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader([]byte(out))))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil || len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
	}
	find := func(kind string) *unstructured.Unstructured {
		for _, o := range objs {
			if o.GetKind() == kind {
				return o
			}
		}
		t.Fatalf("no %s rendered", kind)
		return nil
	}
	pm := find("PodMonitor")
	if sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels"); sel[injector.LabelInjected] != "true" {
		t.Errorf("PodMonitor selects %v, want %s=true", sel, injector.LabelInjected)
	}
	if any, _, _ := unstructured.NestedBool(pm.Object, "spec", "namespaceSelector", "any"); !any {
		t.Error("PodMonitor does not look in every namespace")
	}
	eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != injector.MetricsPortName {
		t.Errorf("PodMonitor endpoints %v, want port %s", eps, injector.MetricsPortName)
	}

	sm := find("ServiceMonitor")
	svc := find("Service")
	smSel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range smSel {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %v, which the Service's labels %v do not match", smSel, svc.GetLabels())
		}
	}
	if sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v, want metrics.serviceMonitor.labels", sm.GetLabels())
	}
	smEps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	var svcPorts []string
	for _, p := range ports {
		svcPorts = append(svcPorts, p.(map[string]any)["name"].(string))
	}
	if len(smEps) != 1 || smEps[0].(map[string]any)["scheme"] != "https" || !strings.Contains(strings.Join(svcPorts, ","), smEps[0].(map[string]any)["port"].(string)) {
		t.Errorf("ServiceMonitor endpoints %v, want https on a port of the Service (%v)", smEps, svcPorts)
	}

	// Off by default, and refused without secure metrics (which listen on localhost only).
	if def := h.must(t, "template", chartRelease, chartDir, "-n", ownNS); strings.Contains(def, "kind: PodMonitor") || strings.Contains(def, "kind: ServiceMonitor") {
		t.Error("monitors rendered by default")
	}
	if _, err := h.run("template", chartRelease, chartDir, "-n", ownNS, "--set", "metrics.secure=false", "--set", "metrics.serviceMonitor.enabled=true"); err == nil {
		t.Error("a ServiceMonitor rendered for metrics on localhost only")
	}
}
