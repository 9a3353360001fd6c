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
	// DefaultUsernameKey and DefaultPasswordKey are the keys of a kubernetes.io/basic-auth
	// Secret. The username is always under DefaultUsernameKey; <secret>/<key> names the
	// password's key.
	DefaultUsernameKey = "username"
	DefaultPasswordKey = "password"
)

// The agent's Secret volumes, mounted read-only in the agent alone.
const (
	// UpstreamCAVolume holds the key of AnnotationUpstreamCA, mounted at UpstreamCADir.
	UpstreamCAVolume = "sidelog-upstream-ca"
	UpstreamCADir    = "/etc/sidelog/upstream-ca"
	// SharedKeyVolume holds the key of AnnotationUpstreamSharedKey, mounted at SharedKeyDir.
	SharedKeyVolume = "sidelog-shared-key"
	SharedKeyDir    = "/etc/sidelog/shared-key"
	// UserVolume holds the username and password of AnnotationUpstreamUser, mounted at UserDir.
	UserVolume = "sidelog-upstream-user"
	UserDir    = "/etc/sidelog/upstream-user"
)

// upstreamSecurity is how the agent connects to the upstream.
type upstreamSecurity struct {
	tls        bool
	serverName string     // empty: the host of each address; always empty without tls
	ca         *secretRef // nil: the system roots; always nil without tls
	sharedKey  *secretRef // nil: no authentication
	user       *secretRef // nil: no user; never set without sharedKey
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

	s, ok := pick(ps, ns, optUser, "")
	switch {
	case ok:
		sec.user = ptr(s.parsed.(secretRef))
	case p.UpstreamUser != "":
		ref, err := parseUserRef(p.UpstreamUser)
		if err != nil {
			return errorf("upstreamUser", FromPolicy, "%v", err)
		}
		sec.user = &ref
	}
	if sec.user != nil && sec.sharedKey == nil {
		// The forward protocol carries the user in the shared-key handshake: without a key
		// there is no handshake, and an agent that dropped the user would connect unnoticed.
		key, origin := "upstreamUser", FromPolicy
		if ok {
			key, origin = s.key, s.origin
		}
		return errorf(key, origin, "user authentication is part of the forward protocol's shared-key handshake: set %s too", AnnotationUpstreamSharedKey)
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
func upstreamConfig(sec upstreamSecurity, u *config.Upstream) {
	if sec.tls {
		u.TLS = &config.TLS{ServerName: sec.serverName}
		if sec.ca != nil {
			u.TLS.CAFile = path.Join(UpstreamCADir, sec.ca.Key)
		}
	}
	if sec.sharedKey != nil {
		u.SharedKeyFile = path.Join(SharedKeyDir, sec.sharedKey.Key)
	}
	if sec.user != nil {
		u.UsernameFile = path.Join(UserDir, DefaultUsernameKey)
		u.PasswordFile = path.Join(UserDir, passwordFile)
	}
}

// passwordFile is the password's file name in UserDir, whatever its key in the Secret: the key
// may be "username" too (a Secret of other keys), and a projected path must be unique.
const passwordFile = "password"

// upstreamVolumes are the Secret volumes sec needs and the agent's mounts of them. Each volume
// projects the one key the agent reads, so that a Secret holding more (a cert-manager Secret
// has the upstream's private key too) shows the agent nothing else.
func upstreamVolumes(sec upstreamSecurity) ([]corev1.Volume, []corev1.VolumeMount) {
	var vols []corev1.Volume
	var mounts []corev1.VolumeMount
	add := func(name, dir string, ref *secretRef, items ...corev1.KeyToPath) {
		if ref == nil {
			return
		}
		if items == nil {
			items = []corev1.KeyToPath{{Key: ref.Key, Path: ref.Key}}
		}
		vols = append(vols, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: ref.Name,
			Items:      items,
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: dir, ReadOnly: true})
	}
	add(UpstreamCAVolume, UpstreamCADir, sec.ca)
	add(SharedKeyVolume, SharedKeyDir, sec.sharedKey)
	if sec.user != nil {
		add(UserVolume, UserDir, sec.user,
			corev1.KeyToPath{Key: DefaultUsernameKey, Path: DefaultUsernameKey},
			corev1.KeyToPath{Key: sec.user.Key, Path: passwordFile})
	}
	return vols, mounts
}
