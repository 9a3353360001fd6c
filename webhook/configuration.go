package webhook

import (
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidelog/sidelog/injector"
)

// WebhookName is the name of the webhook within its MutatingWebhookConfiguration; the API
// server's messages name it ("admission webhook "inject.sidelog.io" denied the request: ...").
const WebhookName = "inject.sidelog.io"

// WorkloadWebhookName is the name of the workload check (WorkloadHandler) in the same
// configuration.
const WorkloadWebhookName = "check.sidelog.io"

// WorkloadRules are the workloads whose pod templates are checked at create and update. Argo
// Rollouts are listed too: a rule for a resource the cluster does not serve matches nothing.
var WorkloadRules = []admissionregistrationv1.Rule{
	{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}},
	{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"jobs", "cronjobs"}},
	{APIGroups: []string{"argoproj.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"rollouts"}},
}

// MatchCondition spares the webhook every pod without a sidelog.io/ annotation. It matches the
// whole prefix, not only sidelog.io/tail, so that a misspelt key or an option without tail globs
// is refused rather than silently leaving the pod without its agent.
var MatchCondition = admissionregistrationv1.MatchCondition{
	Name:       "has-sidelog-annotation",
	Expression: "has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('" + injector.Prefix + "'))",
}

// Configuration returns the MutatingWebhookConfiguration that sends sidelog the pods it may
// change: pod CREATEs in namespaces labelled NamespaceLabel=NamespaceLabelEnabled, except
// kube-system and namespace, the webhook's own. The Helm chart renders the same object; the
// e2e tests install this one, so compare the two when either changes.
//
// failurePolicy is Fail because a pod that asked for its logs to be shipped must not start
// without the agent; the namespaceSelector confines that risk to opted-in namespaces.
// reinvocationPolicy IfNeeded calls the injector again when a later webhook changed a pod it was
// called for, so that it decides on the final annotations: a pod a later webhook opted in
// (sidelog.io/inject turned to "true") gets the agent then, and a pod injected already comes
// back unchanged (the injector is idempotent; volumes a later webhook adds are not mounted into
// the agent). The API server reinvokes only webhooks it called in the first round: a pod with
// no sidelog.io/ annotation then (MatchCondition) is never sent to sidelog.
//
// The second webhook, WorkloadWebhookName, checks workloads' pod templates (WorkloadHandler) at
// WorkloadPath: it is registered as a mutating webhook that never patches, in the same
// configuration, so that one caBundle (cert-manager's cainjector or certs.Rotator) and one RBAC
// rule serve both. Its failurePolicy is Ignore: it gives early advice, and the pod webhook
// enforces the same rules; a workload must never wait for it.
func Configuration(name, namespace string, clientConfig admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	equivalent := admissionregistrationv1.Equivalent
	namespaced := admissionregistrationv1.NamespacedScope
	timeout := int32(5)
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{
			APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
			Kind:       "MutatingWebhookConfiguration",
		},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         WebhookName,
			ClientConfig: clientConfig,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
					Scope:       &namespaced,
				},
			}},
			NamespaceSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: NamespaceLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{NamespaceLabelEnabled}},
					{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{KubeSystem, namespace}},
				},
			},
			ObjectSelector:          &metav1.LabelSelector{},
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &ifNeeded,
			MatchConditions:         []admissionregistrationv1.MatchCondition{MatchCondition},
		}, workloadWebhook(namespace, clientConfig)},
	}
}

func workloadWebhook(namespace string, clientConfig admissionregistrationv1.WebhookClientConfig) admissionregistrationv1.MutatingWebhook {
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	equivalent := admissionregistrationv1.Equivalent
	namespaced := admissionregistrationv1.NamespacedScope
	timeout := int32(5)
	cc := *clientConfig.DeepCopy()
	if cc.Service != nil {
		path := WorkloadPath
		cc.Service.Path = &path
	}
	if cc.URL != nil {
		url := strings.TrimSuffix(*cc.URL, Path) + WorkloadPath
		cc.URL = &url
	}
	var rules []admissionregistrationv1.RuleWithOperations
	for _, r := range WorkloadRules {
		r.Scope = &namespaced
		rules = append(rules, admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       r,
		})
	}
	return admissionregistrationv1.MutatingWebhook{
		Name:         WorkloadWebhookName,
		ClientConfig: cc,
		Rules:        rules,
		NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: NamespaceLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{NamespaceLabelEnabled}},
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{KubeSystem, namespace}},
			},
		},
		ObjectSelector:          &metav1.LabelSelector{},
		FailurePolicy:           &ignore,
		MatchPolicy:             &equivalent,
		SideEffects:             &none,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
		ReinvocationPolicy:      &never,
		MatchConditions:         []admissionregistrationv1.MatchCondition{WorkloadMatchCondition},
	}
}

// ServiceClientConfig is the clientConfig that reaches the webhook through its Service on
// port 443 at Path, as the chart deploys it.
func ServiceClientConfig(namespace, service string, caBundle []byte) admissionregistrationv1.WebhookClientConfig {
	path := Path
	port := int32(443)
	return admissionregistrationv1.WebhookClientConfig{
		Service:  &admissionregistrationv1.ServiceReference{Namespace: namespace, Name: service, Path: &path, Port: &port},
		CABundle: caBundle,
	}
}
