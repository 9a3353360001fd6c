package e2e

import (
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
)

// TestChartRollout checks what the chart does for rollouts of the webhook: a changed policy
// rolls the Deployment (and only a changed policy), the webhook is told the configuration's
// failurePolicy, and it drains before it stops within the grace period.
func TestChartRollout(t *testing.T) {
	h := newHelm(t)
	template := func(flags ...string) *appsv1.Deployment {
		return objectOf[*appsv1.Deployment](t, h.template(t, flags...))
	}
	checksum := func(d *appsv1.Deployment) string {
		sum := d.Spec.Template.Annotations["checksum/policy"]
		if sum == "" {
			t.Fatalf("pod template annotations %v: no checksum/policy", d.Spec.Template.Annotations)
		}
		return sum
	}
	base := template()
	if checksum(template("--set", "timeoutSeconds=7", "--set", "podAnnotations.team=logs")) != checksum(base) {
		t.Error("checksum/policy changed with values that are not the policy")
	}
	if checksum(template("--set", "policy.maxGlobs=4")) == checksum(base) {
		t.Error("checksum/policy did not change with the policy: the Deployment would not roll")
	}
	if got := template("--set", "podAnnotations.team=logs").Spec.Template.Annotations["team"]; got != "logs" {
		t.Errorf("podAnnotations.team = %q on the pod template, want logs", got)
	}

	for _, fp := range []string{"Fail", "Ignore"} {
		d := template("--set", "failurePolicy="+fp)
		flags := argFlags(t, d.Spec.Template.Spec.Containers[0].Args)
		if flags["failure-policy"] != fp {
			t.Errorf("failurePolicy=%s: --failure-policy = %q", fp, flags["failure-policy"])
		}
	}
	flags := argFlags(t, base.Spec.Template.Spec.Containers[0].Args)
	if flags["shutdown-delay"] != "5s" || base.Spec.Template.Spec.TerminationGracePeriodSeconds == nil || *base.Spec.Template.Spec.TerminationGracePeriodSeconds < 5+5 {
		t.Errorf("--shutdown-delay = %q, terminationGracePeriodSeconds %v: want 5s, and time for it and the longest admission (timeoutSeconds, 5)",
			flags["shutdown-delay"], base.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}
	if s := base.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v: want maxUnavailable 0, so that a replica that is not ready stops the rollout", s)
	}

	// cert-manager renews the CA with the same key, so that serving certificates signed before
	// and after the renewal verify against either caBundle.
	for _, c := range objectsOf[*certmanagerv1.Certificate](h.template(t, chartCertManager...)) {
		if c.Spec.IsCA && (c.Spec.PrivateKey == nil || c.Spec.PrivateKey.RotationPolicy != certmanagerv1.RotationPolicyNever) {
			t.Errorf("CA Certificate %s: privateKey %+v, want rotationPolicy Never", c.Name, c.Spec.PrivateKey)
		}
	}
}
