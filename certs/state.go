package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// Keys of the Secret's data.
const (
	// KeyCABundle holds every CA the API server should trust, the current one first: PEM.
	KeyCABundle = "ca.crt"
	// KeyCAKey holds the current CA's private key: PEM.
	KeyCAKey = "ca.key"
	// KeyCert holds the serving certificate: PEM.
	KeyCert = "tls.crt"
	// KeyKey holds the serving certificate's private key: PEM.
	KeyKey = "tls.key"
)

// RevisionAnnotation is set on the Secret and on the MutatingWebhookConfiguration to the
// revision of the CA bundle they hold. It grows by one each time the bundle changes, so a replica
// that read an older Secret never overwrites a newer caBundle.
const RevisionAnnotation = "certs.sidelog.io/ca-bundle-revision"

// state is what the Secret holds.
type state struct {
	ca       *keyPair            // current CA; nil if missing or unusable
	previous []*x509.Certificate // earlier CAs still trusted, newest first
	serving  *keyPair            // nil if missing or unusable
	revision int64
}

// parseState reads the Secret's data and annotations. A part that is missing or broken is left
// nil and reported in problems, so that it is made again rather than blocking the webhook.
func parseState(data map[string][]byte, annotations map[string]string) (st state, problems []error) {
	if s, ok := annotations[RevisionAnnotation]; ok {
		rev, err := strconv.ParseInt(s, 10, 64)
		if err != nil || rev < 0 {
			problems = append(problems, fmt.Errorf("annotation %s: want a non-negative integer, got %q", RevisionAnnotation, s))
		} else {
			st.revision = rev
		}
	}
	if len(data[KeyCABundle]) == 0 && len(data[KeyCAKey]) == 0 {
		return st, problems // a new or emptied Secret: nothing else to read
	}

	bundle, err := parseCertificates(data[KeyCABundle])
	if err != nil {
		return st, append(problems, fmt.Errorf("%s: %w", KeyCABundle, err))
	}
	key, err := parseKey(data[KeyCAKey])
	if err != nil {
		return st, append(problems, fmt.Errorf("%s: %w", KeyCAKey, err))
	}
	for _, c := range bundle {
		switch {
		case !c.IsCA:
		case st.ca == nil && keyMatches(key, c):
			st.ca = &keyPair{cert: c, key: key, certPEM: encodeCertificates([]*x509.Certificate{c}), keyPEM: data[KeyCAKey]}
		default:
			st.previous = append(st.previous, c)
		}
	}
	if st.ca == nil {
		// Without the current CA's key no new certificate can be signed: start a new CA.
		return state{revision: st.revision}, append(problems, fmt.Errorf("%s: no CA certificate matches %s", KeyCABundle, KeyCAKey))
	}

	if len(data[KeyCert]) > 0 || len(data[KeyKey]) > 0 {
		serving, err := parseKeyPair(data[KeyCert], data[KeyKey])
		if err != nil {
			problems = append(problems, fmt.Errorf("%s/%s: %w", KeyCert, KeyKey, err))
		} else {
			st.serving = serving
		}
	}
	return st, problems
}

// trusted returns the CAs of the bundle, the current one first.
func (st state) trusted() []*x509.Certificate {
	if st.ca == nil {
		return nil
	}
	return append([]*x509.Certificate{st.ca.cert}, st.previous...)
}

// bundlePEM is the caBundle: every trusted CA, the current one first.
func (st state) bundlePEM() []byte {
	return encodeCertificates(st.trusted())
}

// data is the Secret's data for st.
func (st state) data() map[string][]byte {
	d := map[string][]byte{
		KeyCABundle: st.bundlePEM(),
		KeyCAKey:    st.ca.keyPEM,
	}
	if st.serving != nil {
		d[KeyCert] = st.serving.certPEM
		d[KeyKey] = st.serving.keyPEM
	}
	return d
}

// issuer returns the CA of the bundle that signed the serving certificate, or nil.
func (st state) issuer() *x509.Certificate {
	if st.serving == nil {
		return nil
	}
	for _, ca := range st.trusted() {
		if signedBy(st.serving.cert, ca) {
			return ca
		}
	}
	return nil
}

// plan is what one reconciliation decided.
type plan struct {
	next    state
	changed bool     // next differs from what the Secret holds
	reasons []string // why, for the log
	wake    time.Time
}

// timing is the part of Options that plan needs.
type timing struct {
	caLifetime, caRenewBefore           time.Duration
	servingLifetime, servingRenewBefore time.Duration
	rolloverDelay, resync               time.Duration
}

// decide works out the next state from the current one at now. liveRevision is the revision the
// webhook configuration carries; publishedSince is when the current CA was first seen in the
// webhook configuration's caBundle by this process (zero if not yet).
func decide(cur state, hosts []string, liveRevision int64, publishedSince, now time.Time, t timing) (plan, error) {
	p := plan{next: cur}
	n := &p.next
	n.previous = slices.Clone(cur.previous)
	rollover := false // the serving certificate must move to a new CA once it is trusted

	switch {
	case n.ca == nil || !now.Before(n.ca.cert.NotAfter):
		ca, err := newCA(now, t.caLifetime)
		if err != nil {
			return plan{}, err
		}
		if n.ca == nil {
			p.reasons = append(p.reasons, "no CA")
		} else {
			p.reasons = append(p.reasons, "CA expired")
		}
		n.ca = ca
		publishedSince = time.Time{}
	case !now.Before(n.ca.cert.NotAfter.Add(-t.caRenewBefore)):
		ca, err := newCA(now, t.caLifetime)
		if err != nil {
			return plan{}, err
		}
		p.reasons = append(p.reasons, fmt.Sprintf("CA expires at %s", n.ca.cert.NotAfter.Format(time.RFC3339)))
		n.previous = append([]*x509.Certificate{n.ca.cert}, n.previous...)
		n.ca = ca
		publishedSince = time.Time{}
	}
	n.previous = slices.DeleteFunc(n.previous, func(c *x509.Certificate) bool {
		if now.Before(c.NotAfter) {
			return false
		}
		p.reasons = append(p.reasons, fmt.Sprintf("previous CA %q expired", c.Subject.CommonName))
		return true
	})

	issuer := n.issuer()
	// A new CA signs the serving certificate only once the API servers have had time to load
	// the caBundle that holds it; until then the old certificate, trusted through the previous
	// CA, keeps serving.
	trustedSince := publishedSince.Add(t.rolloverDelay)
	newCATrusted := !publishedSince.IsZero() && !now.Before(trustedSince)
	var why string
	switch {
	case n.serving == nil:
		why = "no serving certificate"
	case issuer == nil:
		why = "serving certificate not signed by a trusted CA"
	case !now.Before(n.serving.cert.NotAfter):
		why = "serving certificate expired"
	case !slices.Equal(certHosts(n.serving.cert), hosts):
		why = fmt.Sprintf("serving certificate is for %v, want %v", certHosts(n.serving.cert), hosts)
	case !issuer.Equal(n.ca.cert):
		rollover = true
		if newCATrusted {
			why = "moving serving certificate to the new CA"
		}
	case !now.Before(n.serving.cert.NotAfter.Add(-t.servingRenewBefore)):
		why = fmt.Sprintf("serving certificate expires at %s", n.serving.cert.NotAfter.Format(time.RFC3339))
	}
	if why != "" {
		serving, err := newServing(n.ca, hosts, now, t.servingLifetime)
		if err != nil {
			return plan{}, err
		}
		n.serving = serving
		rollover = false
		p.reasons = append(p.reasons, why)
	}

	bundleChanged := cur.ca == nil || !slices.EqualFunc(cur.trusted(), n.trusted(), (*x509.Certificate).Equal)
	switch {
	case bundleChanged:
		n.revision = max(cur.revision, liveRevision) + 1
	case liveRevision > cur.revision:
		// The webhook configuration is ahead of a Secret that was recreated or restored: move
		// the Secret past it so that its bundle is published again.
		n.revision = liveRevision + 1
		p.reasons = append(p.reasons, fmt.Sprintf("webhook configuration has revision %d, Secret %d", liveRevision, cur.revision))
	}
	p.changed = len(p.reasons) > 0

	p.wake = now.Add(t.resync)
	wakeAt := func(at time.Time) {
		if at.Before(p.wake) {
			p.wake = at
		}
	}
	wakeAt(n.ca.cert.NotAfter.Add(-t.caRenewBefore))
	for _, c := range n.previous {
		wakeAt(c.NotAfter)
	}
	if rollover {
		// Renewal waits for the new CA to be trusted, unless the certificate expires first.
		wakeAt(n.serving.cert.NotAfter)
		if publishedSince.IsZero() {
			wakeAt(now.Add(t.rolloverDelay))
		} else {
			wakeAt(trustedSince)
		}
	} else {
		wakeAt(n.serving.cert.NotAfter.Add(-t.servingRenewBefore))
	}
	if p.wake.Before(now) {
		p.wake = now
	}
	return p, nil
}

// canonicalHosts sorts hosts, writes IP addresses in their canonical form and drops repeats.
func canonicalHosts(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, h := range in {
		if h == "" {
			return nil, errors.New("empty host name")
		}
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
