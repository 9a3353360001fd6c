package certs

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"
)

var testTiming = timing{
	caLifetime: 90 * time.Hour, caRenewBefore: 30 * time.Hour,
	servingLifetime: 9 * time.Hour, servingRenewBefore: 3 * time.Hour,
	rolloverDelay: time.Minute, resync: 1000 * time.Hour,
}

var testHosts = []string{"127.0.0.1", "sidelog", "sidelog.sidelog-system", "sidelog.sidelog-system.svc"}

// mustDecide runs decide and fails the test on error.
func mustDecide(t *testing.T, cur state, liveRev int64, published, now time.Time) plan {
	t.Helper()
	p, err := decide(cur, testHosts, liveRev, published, now, testTiming)
	if err != nil {
		t.Fatalf("decide: %v", err)
	}
	return p
}

func TestDecide(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	fresh := mustDecide(t, state{}, 0, time.Time{}, t0).next

	// rotated is fresh after its CA was replaced, the serving certificate still on the old CA.
	tRotate := t0.Add(61 * time.Hour)
	rotatedPlan := mustDecide(t, renewServing(t, fresh, t0.Add(58*time.Hour)), 0, time.Time{}, tRotate)
	rotated := rotatedPlan.next

	tests := []struct {
		name      string
		cur       state
		liveRev   int64
		published time.Time
		now       time.Time

		wantChanged    bool
		wantNewCA      bool
		wantNewServing bool
		wantPrevious   int
		wantRevision   int64
		wantWake       time.Time
		wantIssuerNew  bool // the serving certificate is signed by the (possibly new) current CA
	}{
		{
			name: "nothing yet", cur: state{}, now: t0,
			wantChanged: true, wantNewCA: true, wantNewServing: true, wantRevision: 1,
			wantWake: t0.Add(6 * time.Hour), wantIssuerNew: true,
		},
		{
			name: "all current", cur: fresh, published: t0, now: t0.Add(time.Hour),
			wantRevision: 1, wantWake: t0.Add(6 * time.Hour), wantIssuerNew: true,
		},
		{
			name: "serving due", cur: fresh, published: t0, now: t0.Add(6 * time.Hour),
			wantChanged: true, wantNewServing: true, wantRevision: 1,
			wantWake: t0.Add(12 * time.Hour), wantIssuerNew: true,
		},
		{
			name: "serving expired", cur: fresh, published: t0, now: t0.Add(10 * time.Hour),
			wantChanged: true, wantNewServing: true, wantRevision: 1,
			wantWake: t0.Add(16 * time.Hour), wantIssuerNew: true,
		},
		{
			name: "CA due: new CA published first, serving kept", cur: renewServing(t, fresh, t0.Add(58*time.Hour)),
			published: t0, now: tRotate,
			wantChanged: true, wantNewCA: true, wantPrevious: 1, wantRevision: 2,
			wantWake: tRotate.Add(time.Minute),
		},
		{
			name: "new CA not yet published long enough", cur: rotated, liveRev: 2,
			published: tRotate.Add(30 * time.Second), now: tRotate.Add(time.Minute),
			wantPrevious: 1, wantRevision: 2, wantWake: tRotate.Add(90 * time.Second),
		},
		{
			name: "new CA trusted: serving moves to it", cur: rotated, liveRev: 2,
			published: tRotate, now: tRotate.Add(time.Minute),
			wantChanged: true, wantNewServing: true, wantPrevious: 1, wantRevision: 2,
			wantWake: tRotate.Add(time.Minute + 6*time.Hour), wantIssuerNew: true,
		},
		{
			name: "rollover pending and serving expired: reissued anyway", cur: rotated, liveRev: 2,
			now:         t0.Add(68 * time.Hour),
			wantChanged: true, wantNewServing: true, wantPrevious: 1, wantRevision: 2,
			wantWake: t0.Add(74 * time.Hour), wantIssuerNew: true,
		},
		{
			name: "previous CA expired: dropped", cur: rotated, liveRev: 2, published: tRotate,
			now:         t0.Add(91 * time.Hour),
			wantChanged: true, wantNewServing: true, wantRevision: 3,
			wantWake: t0.Add(97 * time.Hour), wantIssuerNew: true,
		},
		{
			name: "webhook configuration ahead: revision moves past it", cur: fresh, liveRev: 7,
			published: t0, now: t0.Add(time.Hour),
			wantChanged: true, wantRevision: 8, wantWake: t0.Add(6 * time.Hour), wantIssuerNew: true,
		},
		{
			name: "CA expired: everything new", cur: fresh, published: t0, now: t0.Add(100 * time.Hour),
			wantChanged: true, wantNewCA: true, wantNewServing: true, wantRevision: 2,
			wantWake: t0.Add(106 * time.Hour), wantIssuerNew: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustDecide(t, tt.cur, tt.liveRev, tt.published, tt.now)
			n := p.next
			if p.changed != tt.wantChanged {
				t.Errorf("changed = %v (reasons %q), want %v", p.changed, p.reasons, tt.wantChanged)
			}
			if got := tt.cur.ca == nil || !n.ca.cert.Equal(tt.cur.ca.cert); got != tt.wantNewCA {
				t.Errorf("new CA = %v, want %v", got, tt.wantNewCA)
			}
			if got := tt.cur.serving == nil || !n.serving.cert.Equal(tt.cur.serving.cert); got != tt.wantNewServing {
				t.Errorf("new serving certificate = %v, want %v", got, tt.wantNewServing)
			}
			if len(n.previous) != tt.wantPrevious {
				t.Errorf("previous CAs = %d, want %d", len(n.previous), tt.wantPrevious)
			}
			if n.revision != tt.wantRevision {
				t.Errorf("revision = %d, want %d", n.revision, tt.wantRevision)
			}
			if !p.wake.Equal(tt.wantWake) {
				t.Errorf("wake = %s, want %s", p.wake, tt.wantWake)
			}
			if got := signedBy(n.serving.cert, n.ca.cert); got != tt.wantIssuerNew {
				t.Errorf("serving certificate signed by the current CA = %v, want %v", got, tt.wantIssuerNew)
			}
			if n.issuer() == nil {
				t.Errorf("serving certificate is not signed by any CA of the bundle")
			}
			if !slices.Equal(certHosts(n.serving.cert), testHosts) {
				t.Errorf("serving certificate hosts = %v, want %v", certHosts(n.serving.cert), testHosts)
			}
			if !n.serving.cert.NotAfter.After(tt.now) {
				t.Errorf("serving certificate expires at %s, not after now %s", n.serving.cert.NotAfter, tt.now)
			}
		})
	}
}

func TestDecideHostsChanged(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := mustDecide(t, state{}, 0, time.Time{}, t0).next
	hosts := []string{"other", "other.ns.svc"}
	p, err := decide(cur, hosts, 1, t0, t0.Add(time.Minute), testTiming)
	if err != nil {
		t.Fatal(err)
	}
	if !p.changed || !slices.Equal(certHosts(p.next.serving.cert), hosts) {
		t.Errorf("changed = %v, hosts = %v; want a new certificate for %v", p.changed, certHosts(p.next.serving.cert), hosts)
	}
	if p.next.revision != 1 {
		t.Errorf("revision = %d, want 1: the bundle did not change", p.next.revision)
	}
}

// renewServing returns st with a serving certificate issued at now by st's CA.
func renewServing(t *testing.T, st state, now time.Time) state {
	t.Helper()
	s, err := newServing(st.ca, testHosts, now, testTiming.servingLifetime)
	if err != nil {
		t.Fatal(err)
	}
	st.serving = s
	return st
}

func TestParseStateRoundTrip(t *testing.T) {
	t0 := time.Now()
	st := mustDecide(t, state{}, 0, time.Time{}, t0).next
	st.previous = []*x509.Certificate{mustCA(t, t0).cert}
	st.revision = 4

	got, problems := parseState(st.data(), map[string]string{RevisionAnnotation: "4"})
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	if !got.ca.cert.Equal(st.ca.cert) || !got.serving.cert.Equal(st.serving.cert) {
		t.Errorf("CA or serving certificate not read back")
	}
	if len(got.previous) != 1 || !got.previous[0].Equal(st.previous[0]) {
		t.Errorf("previous = %d certificates, want the one written", len(got.previous))
	}
	if got.revision != 4 {
		t.Errorf("revision = %d, want 4", got.revision)
	}
}

func TestParseStateBroken(t *testing.T) {
	t0 := time.Now()
	good := mustDecide(t, state{}, 0, time.Time{}, t0).next.data()
	other := mustCA(t, t0)
	with := func(k string, v []byte) map[string][]byte {
		d := map[string][]byte{}
		for kk, vv := range good {
			d[kk] = vv
		}
		d[k] = v
		return d
	}
	tests := []struct {
		name        string
		data        map[string][]byte
		annotations map[string]string
		wantCA      bool
		wantServing bool
		wantProblem string
	}{
		{"empty", nil, nil, false, false, ""},
		{"garbage CA key", with(KeyCAKey, []byte("nope")), nil, false, false, KeyCAKey},
		{"CA key of another CA", with(KeyCAKey, other.keyPEM), nil, false, false, "no CA certificate matches"},
		{"serving key of another pair", with(KeyKey, other.keyPEM), nil, true, false, "does not match"},
		{"bad revision", good, map[string]string{RevisionAnnotation: "x"}, true, true, RevisionAnnotation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, problems := parseState(tt.data, tt.annotations)
			if (st.ca != nil) != tt.wantCA || (st.serving != nil) != tt.wantServing {
				t.Errorf("CA read = %v, serving read = %v; want %v, %v", st.ca != nil, st.serving != nil, tt.wantCA, tt.wantServing)
			}
			switch {
			case tt.wantProblem == "" && len(problems) > 0:
				t.Errorf("problems = %v, want none", problems)
			case tt.wantProblem != "" && (len(problems) == 0 || !strings.Contains(problems[0].Error(), tt.wantProblem)):
				t.Errorf("problems = %v, want one mentioning %q", problems, tt.wantProblem)
			}
		})
	}
}

func mustCA(t *testing.T, now time.Time) *keyPair {
	t.Helper()
	ca, err := newCA(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
