package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/injector"
)

// These tests ship to a real Fluent Bit, the aggregator most users run, through the agent the
// injector configured: its in_forward acknowledges every chunk (the agent always asks), and does
// what the OpenTelemetry receiver cannot: TLS, the shared-key handshake, users and gzip.

// fluentBit returns the path of a fluent-bit binary: $FLUENT_BIT, else one on PATH. Without
// either the test is skipped: users of the project have no ../shared, and CI sets FLUENT_BIT.
func fluentBit(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FLUENT_BIT"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("FLUENT_BIT=%s: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("fluent-bit"); err == nil {
		return p
	}
	t.Skip("no Fluent Bit: set FLUENT_BIT to a fluent-bit binary or put one on PATH (CI uses ../shared/tools/fluent-bit)")
	return ""
}

// fluentBitOptions are the in_forward settings of a receiver, under their Fluent Bit names.
type fluentBitOptions struct {
	sharedKey string
	users     map[string]string // name → password: security.users
	tls       *serverCert
}

type fluentBitReceiver struct {
	addr string
	out  string // the file output's path: one JSON record per line
	log  *syncBuffer
}

// startFluentBit runs Fluent Bit with in_forward on a free loopback port and the file output in
// plain format, and waits until it listens.
func startFluentBit(t *testing.T, o fluentBitOptions) *fluentBitReceiver {
	t.Helper()
	bin := fluentBit(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	host, port := splitHostPort(t, addr)
	in := []string{"name forward", "listen " + host, fmt.Sprintf("port %d", port), "self_hostname aggregator"}
	if o.sharedKey != "" {
		in = append(in, "shared_key "+o.sharedKey)
	}
	for u, p := range o.users {
		in = append(in, fmt.Sprintf("security.users %s %s", u, p))
	}
	if o.tls != nil {
		in = append(in, "tls on", "tls.verify off", "tls.crt_file "+o.tls.certFile, "tls.key_file "+o.tls.keyFile)
	}
	conf := "[SERVICE]\n    flush 0.2\n    grace 1\n    log_level info\n[INPUT]\n    " + strings.Join(in, "\n    ") +
		"\n[OUTPUT]\n    name file\n    match *\n    format plain\n    path " + dir + "\n    file records.out\n"
	confFile := filepath.Join(dir, "fluent-bit.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &fluentBitReceiver{addr: addr, out: filepath.Join(dir, "records.out"), log: new(syncBuffer)}
	cmd := exec.Command(bin, "-c", confFile)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("Fluent Bit output:\n%s", r.log)
		}
	})
	eventually(t, 30*time.Second, "Fluent Bit to listen on "+addr, func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("fluent-bit exited: %v\n%s", err, r.log)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return r
}

// records returns what Fluent Bit wrote so far, one decoded record per complete line.
func (r *fluentBitReceiver) records(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			break // a line still being written
		}
		recs = append(recs, rec)
	}
	return recs
}

// wait returns the "log" fields of the first n records once n arrived.
func (r *fluentBitReceiver) wait(t *testing.T, n int) []string {
	t.Helper()
	var recs []map[string]any
	eventually(t, 2*time.Minute, fmt.Sprintf("%d records at Fluent Bit", n), func() error {
		if recs = r.records(t); len(recs) < n {
			return fmt.Errorf("%d records so far", len(recs))
		}
		return nil
	})
	logs := make([]string, len(recs))
	for i, rec := range recs {
		logs[i] = fmt.Sprint(rec["log"])
		if k, ok := rec["kubernetes"].(map[string]any); !ok || k["pod_name"] != "checkout-5d8f7-abcde" || k["container_name"] != "app" {
			t.Fatalf("record %d has kubernetes %v, want the pod's identity", i, rec["kubernetes"])
		}
	}
	return logs
}

// serverCert is a certificate for names only, signed by its own CA.
type serverCert struct {
	certFile, keyFile string
	caPEM             []byte
}

func newServerCert(t *testing.T, names ...string) *serverCert {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "aggregator CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &serverCert{certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	for file, block := range map[string]*pem.Block{
		c.certFile: {Type: "CERTIFICATE", Bytes: der},
		c.keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// secretDirs projects Secrets into directories for the injected pod's Secret volumes, as a
// kubelet would: only the items each volume selects. secrets maps a Secret's name to its data.
func secretDirs(t *testing.T, pod *corev1.Pod, secrets map[string]map[string]string) map[string]string {
	t.Helper()
	dirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		data, ok := secrets[v.Secret.SecretName]
		if !ok {
			t.Fatalf("volume %s needs Secret %s, which the test does not have", v.Name, v.Secret.SecretName)
		}
		dir := t.TempDir()
		for _, it := range v.Secret.Items {
			val, ok := data[it.Key]
			if !ok {
				t.Fatalf("Secret %s has no key %s: the kubelet would not start the pod", v.Secret.SecretName, it.Key)
			}
			if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(val), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dirs[v.Name] = dir
	}
	return dirs
}

// TestFluentBit: the agent the injector configured delivers every line, in order and once, to
// Fluent Bit's in_forward in each of its documented secure setups and message modes.
func TestFluentBit(t *testing.T) {
	cert := newServerCert(t, "fluent-bit.logging.svc")
	secrets := map[string]map[string]string{
		"forward-ca":   {"ca.crt": string(cert.caPEM), "tls.key": "not for the agent"},
		"forward-key":  {"shared_key": "s3cret-shared-key\n"},
		"forward-user": {"username": "agent", "password": "pa55word"},
	}
	secure := map[string]string{
		injector.AnnotationUpstreamTLS:        "true",
		injector.AnnotationUpstreamServerName: "fluent-bit.logging.svc", // the agent dials 127.0.0.1
		injector.AnnotationUpstreamCA:         "forward-ca",
		injector.AnnotationUpstreamSharedKey:  "forward-key",
	}
	for _, tt := range []struct {
		name        string
		server      fluentBitOptions
		annotations map[string]string
		policy      string
	}{
		{name: "acks", server: fluentBitOptions{}},
		{name: "Forward mode", policy: "upstreamMode: Forward"},
		{name: "shared key", server: fluentBitOptions{sharedKey: "s3cret-shared-key"},
			annotations: map[string]string{injector.AnnotationUpstreamSharedKey: "forward-key"}},
		{name: "TLS + shared key + user + gzip", policy: "upstreamCompression: gzip",
			server:      fluentBitOptions{sharedKey: "s3cret-shared-key", users: map[string]string{"agent": "pa55word", "other": "x"}, tls: cert},
			annotations: with(secure, injector.AnnotationUpstreamUser, "forward-user")},
		{name: "TLS + shared key + Forward mode", policy: "upstreamMode: Forward",
			server: fluentBitOptions{sharedKey: "s3cret-shared-key", tls: cert}, annotations: secure},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb := startFluentBit(t, tt.server)
			dir := t.TempDir()
			ann := map[string]string{injector.AnnotationTail + ".app": dir + "/*.log", injector.AnnotationUpstream: fb.addr}
			maps.Copy(ann, tt.annotations)
			pod := injectWith(t, logPod(dir, ann), tt.policy+"\n")
			vols := secretDirs(t, pod, secrets)
			vols["logs"] = dir
			agent := runInjectedAgent(t, pod, vols)
			want := numbered(strings.ReplaceAll(tt.name, " ", "-"), 0, 2000)
			appendFile(t, filepath.Join(dir, "app.log"), want[:1000]...)
			fb.wait(t, 1000)
			appendFile(t, filepath.Join(dir, "app.log"), want[1000:]...)
			got := fb.wait(t, len(want))
			if err := agent.stop(t); err != nil {
				t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records at Fluent Bit, lost (-) or duplicated (+):\n%s", diff)
			}
			if strings.Contains(agent.output.String(), "refused") {
				t.Errorf("the agent logged a refusal:\n%s", agent.output)
			}
		})
	}
}

// TestFluentBitRefusesThenAccepts: a wrong shared key, and then a wrong password, are refused by
// Fluent Bit; the agent says so once per attempt and keeps every line in its files; the Secret
// fixed in place (the kubelet rewrites the projected file) is used from the next attempt on,
// without a restart, and every line arrives once.
func TestFluentBitRefusesThenAccepts(t *testing.T) {
	for _, tt := range []struct {
		name, file, wrong, right, agentSays, fluentBitSays string
	}{
		{name: "shared key", file: "shared_key", wrong: "guess", right: "s3cret-shared-key",
			agentSays: "it refused the shared key of upstream.sharedKeyFile", fluentBitSays: "shared_key mismatch"},
		{name: "password", file: "password", wrong: "guess", right: "pa55word",
			agentSays: `the server refused the handshake as user \"agent\"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb := startFluentBit(t, fluentBitOptions{sharedKey: "s3cret-shared-key", users: map[string]string{"agent": "pa55word"}})
			secrets := map[string]map[string]string{
				"forward-key":  {"shared_key": "s3cret-shared-key"},
				"forward-user": {"username": "agent", "password": "pa55word"},
			}
			dir := t.TempDir()
			pod := injectWith(t, logPod(dir, map[string]string{
				injector.AnnotationTail + ".app":     dir + "/*.log",
				injector.AnnotationUpstream:          fb.addr,
				injector.AnnotationUpstreamSharedKey: "forward-key",
				injector.AnnotationUpstreamUser:      "forward-user",
			}), "")
			vols := secretDirs(t, pod, secrets)
			vols["logs"] = dir
			vol := injector.SharedKeyVolume
			if tt.file == "password" {
				vol = injector.UserVolume
			}
			file := filepath.Join(vols[vol], tt.file)
			if err := os.WriteFile(file, []byte(tt.wrong), 0o644); err != nil {
				t.Fatal(err)
			}
			agent := runInjectedAgent(t, pod, vols)
			want := numbered("refused-"+tt.file, 0, 500)
			appendFile(t, filepath.Join(dir, "app.log"), want...)
			eventually(t, time.Minute, "two refusals in the agent's log", func() error {
				if n := strings.Count(agent.output.String(), "upstream refused authentication"); n < 2 {
					return fmt.Errorf("%d so far", n)
				}
				return nil
			})
			if !strings.Contains(agent.output.String(), tt.agentSays) {
				t.Errorf("the agent's log does not say %q:\n%s", tt.agentSays, agent.output)
			}
			if tt.fluentBitSays != "" && !strings.Contains(fb.log.String(), tt.fluentBitSays) {
				t.Errorf("Fluent Bit's log does not say %q:\n%s", tt.fluentBitSays, fb.log)
			}
			if recs := fb.records(t); len(recs) != 0 {
				t.Fatalf("%d records accepted with a wrong %s", len(recs), tt.name)
			}
			// The kubelet updates a Secret volume by swapping a symlink; a rename is as atomic.
			tmp := file + ".new"
			if err := os.WriteFile(tmp, []byte(tt.right), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
			got := fb.wait(t, len(want))
			if err := agent.stop(t); err != nil {
				t.Fatalf("agent exit after SIGTERM = %v, want 0\n%s", err, agent.output)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records at Fluent Bit, lost (-) or duplicated (+):\n%s", diff)
			}
		})
	}
}

// with returns a copy of m with k set to v.
func with(m map[string]string, k, v string) map[string]string {
	c := maps.Clone(m)
	c[k] = v
	return c
}
