package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

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

// TestRenewedCAWithTheSameKeyVerifiesBoth is why the chart's CA Certificate has
// rotationPolicy Never: a CA that cert-manager renews with the same key and subject verifies
// the serving certificates signed before the renewal, and the old CA those signed after, so the
// API server never fails a call while the caBundle and the pods' certificates catch up.
func TestRenewedCAWithTheSameKeyVerifiesBoth(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := func(serial int64, from time.Time) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "sidelog-ca"},
			NotBefore: from, NotAfter: from.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	leaf := func(serial int64, issuer *x509.Certificate) *x509.Certificate {
		lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), DNSNames: []string{"sidelog-webhook.sidelog-system.svc"},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &lk.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	before, after := ca(1, now.Add(-time.Hour)), ca(2, now.Add(-time.Minute))
	for _, tt := range []struct {
		name         string
		leaf, bundle *x509.Certificate
	}{
		{"old serving certificate, renewed CA in the caBundle", leaf(10, before), after},
		{"new serving certificate, old CA still in the caBundle", leaf(11, after), before},
	} {
		pool := x509.NewCertPool()
		pool.AddCert(tt.bundle)
		if _, err := tt.leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "sidelog-webhook.sidelog-system.svc"}); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}
