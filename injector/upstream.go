package injector

import (
	"cmp"
	"fmt"
	"path"
	"strings"

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
	// UpstreamHeadersVolume holds every key of AnnotationUpstreamHeaders, mounted at
	// UpstreamHeadersDir.
	UpstreamHeadersVolume = "sidelog-upstream-headers"
	UpstreamHeadersDir    = "/etc/sidelog/upstream-headers"
)

// upstreamSecurity is how the agent connects to the upstream.
type upstreamSecurity struct {
	protocol    string // config.ProtocolForward or config.ProtocolOTLP
	compression string // config.CompressionNone or config.CompressionGzip; empty for the default
	headers     string // the Secret of AnnotationUpstreamHeaders; empty for none, always with forward
	tls         bool
	serverName  string     // empty: the host of each address; always empty without tls
	ca          *secretRef // nil: the system roots; always nil without tls
	sharedKey   *secretRef // nil: no authentication
	user        *secretRef // nil: no user; never set without sharedKey
}

// resolveSecurity picks the TLS and shared-key settings: the pod's, its namespace's, then the
// policy's. A server name or CA set by an annotation while TLS is off does nothing, which
// deserves a warning; the policy's are defaults for the namespaces that turn TLS on.
//
// The protocol decides how the upstream entries (up says where they come from) are read; with
// OTLP, the URLs' scheme decides TLS, and the forward protocol's shared key and user are
// refused when an annotation asks for them (the policy's are defaults for forward namespaces).
func (r *request) resolveSecurity(ps, ns annotationSet, p *Policy, up setting) error {
	sec := &r.security
	sec.protocol = cmp.Or(p.UpstreamProtocol, config.ProtocolForward)
	protoFrom := "the default"
	if s, ok := pick(ps, ns, optProtocol, ""); ok {
		sec.protocol, protoFrom = s.parsed.(string), describe(s.key, s.origin)
	} else if p.UpstreamProtocol != "" {
		protoFrom = describe("upstreamProtocol", FromPolicy)
	}
	if err := checkUpstreamProtocol(r.upstream, sec.protocol); err != nil {
		return errorf(up.key, up.origin, "%v (protocol %s: %s)", err, sec.protocol, protoFrom)
	}
	otlp := sec.protocol == config.ProtocolOTLP

	sec.compression = p.UpstreamCompression
	if s, ok := pick(ps, ns, optCompression, ""); ok {
		sec.compression = s.parsed.(string)
		if _, err := config.CheckMessage(p.UpstreamMode, sec.compression); err != nil && !otlp {
			return errorf(s.key, s.origin, "gzip is CompressedPackedForward, and the cluster policy's upstreamMode is %s, whose entries cannot be compressed", p.UpstreamMode)
		}
	}

	// A namespace's headers, shared key or user are defaults for the pods of the protocol they
	// belong to; a pod's own are a mistake when its protocol cannot use them.
	s, ok := pick(ps, ns, optHeaders, "")
	switch {
	case ok && !otlp && s.origin == FromPod:
		return errorf(s.key, s.origin, "HTTP headers are for protocol otlp, and the protocol is forward (%s): set %s: otlp, or drop this annotation", protoFrom, AnnotationUpstreamProtocol)
	case ok && otlp:
		sec.headers = s.parsed.(string)
	case otlp:
		sec.headers = p.UpstreamHeaders
	}

	tlsSet, tlsOK := pick(ps, ns, optTLS, "")
	switch {
	case otlp:
		var plain, https string
		for _, u := range r.upstream {
			if strings.HasPrefix(u, "https://") {
				https = cmp.Or(https, u)
			} else {
				plain = cmp.Or(plain, u)
			}
		}
		switch {
		case tlsOK && tlsSet.parsed.(bool) && plain != "":
			return errorf(up.key, up.origin, "%q is plain http, but %s asks for TLS: write https://", plain, describe(tlsSet.key, tlsSet.origin))
		case tlsOK && !tlsSet.parsed.(bool) && https != "":
			return errorf(tlsSet.key, tlsSet.origin, "\"false\", but the upstream %q is https:// (with protocol otlp the URL's scheme says whether TLS is on): drop this annotation or write http://", https)
		case !tlsOK && p.UpstreamTLS && plain != "":
			return errorf(up.key, up.origin, "%q is plain http, but the cluster policy's upstreamTLS requires TLS: write https://", plain)
		}
		sec.tls = https != ""
	case tlsOK:
		sec.tls = tlsSet.parsed.(bool)
	default:
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

	if otlp {
		for _, opt := range []string{optSharedKey, optUser} {
			if s, ok := pick(ps, ns, opt, ""); ok && s.origin == FromPod {
				return errorf(s.key, s.origin, "the forward protocol's handshake, and the protocol is otlp (%s): put credentials in a Secret named by %s", protoFrom, AnnotationUpstreamHeaders)
			}
		}
		return nil // the policy's shared key and user are for the forward protocol
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

	s, ok = pick(ps, ns, optUser, "")
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
		fix := fmt.Sprintf("set %s: \"true\" to turn it on", AnnotationUpstreamTLS)
		if r.security.protocol == config.ProtocolOTLP {
			fix = "no upstream URL is https://"
		}
		r.warnings = append(r.warnings, fmt.Sprintf("%s is ignored: TLS to the upstream is off (%s)", describe(s.key, s.origin), fix))
	}
}

// upstreamConfig is the agent configuration's part for sec: files under the mounts of
// upstreamVolumes.
func upstreamConfig(sec upstreamSecurity, u *config.Upstream) {
	u.Compression = sec.compression
	if sec.protocol == config.ProtocolOTLP {
		u.Protocol = config.ProtocolOTLP
		u.Mode = "" // the forward protocol's
		if sec.headers != "" {
			u.HeadersDir = UpstreamHeadersDir
		}
	}
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
	if sec.headers != "" {
		// Every key is a header: the Secret is projected whole.
		vols = append(vols, corev1.Volume{Name: UpstreamHeadersVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: sec.headers,
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: UpstreamHeadersVolume, MountPath: UpstreamHeadersDir, ReadOnly: true})
	}
	add(SharedKeyVolume, SharedKeyDir, sec.sharedKey)
	if sec.user != nil {
		add(UserVolume, UserDir, sec.user,
			corev1.KeyToPath{Key: DefaultUsernameKey, Path: DefaultUsernameKey},
			corev1.KeyToPath{Key: sec.user.Key, Path: passwordFile})
	}
	return vols, mounts
}
