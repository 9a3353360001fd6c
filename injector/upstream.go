package injector

import (
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/sidecar/config"
)

// The upstream's TLS and shared key: what AnnotationUpstreamTLS, AnnotationUpstreamServerName,
// AnnotationUpstreamCA and AnnotationUpstreamSharedKey ask for, the Secret volumes that bring
// the CA and the key to the agent, and the agent configuration that points at them.
//
// The injector sees no Secret (it is pure), so it cannot check that one exists: a missing
// Secret or key keeps the pod in ContainerCreating with an event that names it, as for any
// Secret volume. That is the wanted failure: an agent that silently fell back to no TLS or no
// authentication would ship logs its operator believes protected.

// Default keys of the Secrets, used when an annotation names the Secret alone.
const (
	// DefaultCAKey is where cert-manager and most tools put a CA bundle.
	DefaultCAKey = "ca.crt"
	// DefaultSharedKeyKey is the name of Fluentd's own parameter.
	DefaultSharedKeyKey = "shared_key"
)

// The agent's Secret volumes, mounted read-only in the agent alone.
const (
	// UpstreamCAVolume holds the key of AnnotationUpstreamCA, mounted at UpstreamCADir.
	UpstreamCAVolume = "sidelog-upstream-ca"
	UpstreamCADir    = "/etc/sidelog/upstream-ca"
	// SharedKeyVolume holds the key of AnnotationUpstreamSharedKey, mounted at SharedKeyDir.
	SharedKeyVolume = "sidelog-shared-key"
	SharedKeyDir    = "/etc/sidelog/shared-key"
)

// upstreamSecurity is how the agent connects to the upstream.
type upstreamSecurity struct {
	tls        bool
	serverName string     // empty: the host of each address; always empty without tls
	ca         *secretRef // nil: the system roots; always nil without tls
	sharedKey  *secretRef // nil: no authentication
}

// resolveSecurity picks the TLS and shared-key settings: the pod's, its namespace's, then the
// policy's. A server name or CA set by an annotation while TLS is off does nothing, which
// deserves a warning; the policy's are defaults for the namespaces that turn TLS on.
func (r *request) resolveSecurity(ps, ns annotationSet, p *Policy) error {
	sec := &r.security
	if s, ok := pick(ps, ns, optTLS, ""); ok {
		sec.tls = s.parsed.(bool)
	} else {
		sec.tls = p.UpstreamTLS
	}

	if s, ok := pick(ps, ns, optServerName, ""); ok {
		sec.serverName = s.parsed.(string)
		r.warnUnlessTLS(s)
	} else {
		sec.serverName = p.UpstreamServerName
	}

	if s, ok := pick(ps, ns, optCA, ""); ok {
		sec.ca = ptr(s.parsed.(secretRef))
		r.warnUnlessTLS(s)
	} else if p.UpstreamCA != "" {
		ref, err := parseSecretRef(p.UpstreamCA, DefaultCAKey)
		if err != nil {
			return errorf("upstreamCA", FromPolicy, "%v", err)
		}
		sec.ca = &ref
	}
	if !sec.tls {
		sec.serverName, sec.ca = "", nil
	}

	if s, ok := pick(ps, ns, optSharedKey, ""); ok {
		sec.sharedKey = ptr(s.parsed.(secretRef))
	} else if p.UpstreamSharedKey != "" {
		ref, err := parseSecretRef(p.UpstreamSharedKey, DefaultSharedKeyKey)
		if err != nil {
			return errorf("upstreamSharedKey", FromPolicy, "%v", err)
		}
		sec.sharedKey = &ref
	}
	return nil
}

func (r *request) warnUnlessTLS(s setting) {
	if !r.security.tls {
		r.warnings = append(r.warnings, fmt.Sprintf("%s is ignored: TLS to the upstream is off (set %s: \"true\" to turn it on)",
			describe(s.key, s.origin), AnnotationUpstreamTLS))
	}
}

// upstreamConfig is the agent configuration's part for sec: files under the mounts of
// upstreamVolumes.
func upstreamConfig(sec upstreamSecurity) (tls *config.TLS, sharedKeyFile string) {
	if sec.tls {
		tls = &config.TLS{ServerName: sec.serverName}
		if sec.ca != nil {
			tls.CAFile = path.Join(UpstreamCADir, sec.ca.Key)
		}
	}
	if sec.sharedKey != nil {
		sharedKeyFile = path.Join(SharedKeyDir, sec.sharedKey.Key)
	}
	return tls, sharedKeyFile
}

// upstreamVolumes are the Secret volumes sec needs and the agent's mounts of them. Each volume
// projects the one key the agent reads, so that a Secret holding more (a cert-manager Secret
// has the upstream's private key too) shows the agent nothing else.
func upstreamVolumes(sec upstreamSecurity) ([]corev1.Volume, []corev1.VolumeMount) {
	var vols []corev1.Volume
	var mounts []corev1.VolumeMount
	add := func(name, dir string, ref *secretRef) {
		if ref == nil {
			return
		}
		vols = append(vols, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: ref.Name,
			Items:      []corev1.KeyToPath{{Key: ref.Key, Path: ref.Key}},
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: dir, ReadOnly: true})
	}
	add(UpstreamCAVolume, UpstreamCADir, sec.ca)
	add(SharedKeyVolume, SharedKeyDir, sec.sharedKey)
	return vols, mounts
}
