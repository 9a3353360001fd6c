package injector

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/sidecar/config"
)

// Policy is the cluster's sidelog policy: a YAML document that the Helm chart keeps in a
// ConfigMap and that `sidelog webhook --policy` and `sidelog inject --policy` read. It gives
// what neither the pod nor its namespace says and limits what pods may say. A zero field takes
// the value of DefaultPolicy. A Policy must not be modified once Inject has used it: its
// revision (PolicyRevision) is kept.
//
// The policy restricts pods only. Namespace annotations may set every option but the tail
// globs: changing a Namespace takes rights that a cluster grants to whoever owns the namespace,
// which is exactly the team whose defaults they are.
type Policy struct {
	// AgentImage is the sidelog-agent image. Default DefaultAgentImage; pin it to a release in
	// production.
	AgentImage string `json:"agentImage,omitempty"`
	// ImagePullPolicy of the agent container. Default unset (Kubernetes then chooses).
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// AgentUser and AgentGroup are the uid and gid the agent runs as, both above zero. Default
	// 65532 (distroless "nonroot"). AgentIdentity says when the agent runs as the app's instead.
	AgentUser  int64 `json:"agentUser,omitempty"`
	AgentGroup int64 `json:"agentGroup,omitempty"`
	// AgentIdentity is who the agent runs as, which decides which of the app's files it can
	// read:
	//   - IdentityApp (default): the uid (and gid) of the tailed containers when they all run
	//     as one explicit non-root uid, so that it reads files only their owner may read (0600);
	//     else AgentUser and AgentGroup;
	//   - IdentityFixed: always AgentUser and AgentGroup;
	//   - IdentityPlatform: as IdentityApp when the tailed containers set one uid, else
	//     runAsUser and runAsGroup are left unset for the platform to assign (OpenShift's
	//     restricted-v2 SCC gives every container of a pod the same uid from the namespace's
	//     range, and refuses any other uid). runAsNonRoot stays true.
	// Whenever the injector cannot know that the agent runs as the uid that writes the files, it
	// says so in a warning; the pod's fsGroup is a supplemental group of the agent too, so
	// group-readable files on volumes that take it are readable either way.
	AgentIdentity string `json:"agentIdentity,omitempty"`
	// StartupProbe is the native sidecar agent's startup probe, which holds the app containers
	// back until the agent runs: ProbeExec (default: the agent binary asks its own /healthz over
	// loopback, which no mesh mTLS or NetworkPolicy stands between) or ProbeNone (no probe: the
	// app may start, and a short Job end, before the agent reads its first line).
	StartupProbe string `json:"startupProbe,omitempty"`
	// Upstream are the default upstreams (failover order) for pods whose namespace and
	// annotations name none: host:port addresses with the forward protocol, http(s):// URLs with
	// OTLP. Default none: such pods are refused.
	Upstream []string `json:"upstream,omitempty"`
	// UpstreamProtocol is the default of sidelog.io/upstream-protocol: "forward" (default) or
	// "otlp".
	UpstreamProtocol string `json:"upstreamProtocol,omitempty"`
	// UpstreamHeaders is the default of sidelog.io/upstream-headers: a Secret, which must then
	// exist in every namespace whose pods use OTLP, whose keys are HTTP headers of the OTLP
	// requests. Ignored with the forward protocol. Default none.
	UpstreamHeaders string `json:"upstreamHeaders,omitempty"`
	// UpstreamTLS turns TLS to the upstream on for pods whose namespace and annotations do not
	// say (sidelog.io/upstream-tls). Default false.
	UpstreamTLS bool `json:"upstreamTLS,omitempty"`
	// UpstreamServerName is the default of sidelog.io/upstream-server-name: the name the
	// upstream's certificate carries. Default none: the host of each address.
	UpstreamServerName string `json:"upstreamServerName,omitempty"`
	// UpstreamCA is the default of sidelog.io/upstream-ca, <secret> or <secret>/<key>: a Secret
	// that must then exist in every namespace whose pods use TLS. Default none: system roots.
	UpstreamCA string `json:"upstreamCA,omitempty"`
	// UpstreamSharedKey is the default of sidelog.io/upstream-shared-key, <secret> or
	// <secret>/<key>: a Secret that must then exist in every opted-in namespace. Default none.
	UpstreamSharedKey string `json:"upstreamSharedKey,omitempty"`
	// UpstreamUser is the default of sidelog.io/upstream-user, <secret> or <secret>/<key>: a
	// Secret with the user (username) and its password (password, or <key>) that must then exist
	// in every opted-in namespace. Needs a shared key. Default none.
	UpstreamUser string `json:"upstreamUser,omitempty"`
	// UpstreamMode is the forward protocol's message mode: PackedForward (default) or Forward,
	// for receivers that read only that.
	UpstreamMode string `json:"upstreamMode,omitempty"`
	// UpstreamCompression is none (default) or gzip (CompressedPackedForward; with OTLP,
	// Content-Encoding: gzip): fewer bytes on the wire for some agent CPU.
	UpstreamCompression string `json:"upstreamCompression,omitempty"`
	// Resources are the agent's requests and limits (cpu, memory, ephemeral-storage), taken as a
	// whole when any is set. Default requests cpu 50m, memory 32Mi; limits cpu 200m, memory
	// 128Mi: a limit at most 4 times the request, which the common LimitRange
	// maxLimitRequestRatio of 4 accepts. A pod with pod-level resources (spec.resources) has
	// the agent's added to them.
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
	// SidecarMode is ModeNative, ModeLegacy or ModeAuto. Default ModeNative.
	SidecarMode string `json:"sidecarMode,omitempty"`
	// KubernetesVersion is the control plane's version ("v1.28.5-eks-5e0fdde"), for ModeAuto:
	// auto means native when it is 1.29 or later or unknown (empty), legacy when older. The
	// webhook may fill it from discovery. Default empty.
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// AllowPodOverride names the options (annotation names after sidelog.io/, without a
	// container suffix) that pods may set: a pod setting another one is refused. inject and tail
	// are always allowed and status is sidelog's. Absent (null) allows every option; an empty
	// list allows none.
	AllowPodOverride []string `json:"allowPodOverride"`
	// MissingVolume is what to do with a log path that is on no volume of its container:
	// "refuse" (default: deny the pod and say how to add a volume) or "emptyDir" (add an
	// emptyDir to the app container and the agent at the glob's directory, with a warning,
	// unless that directory is a system directory that the emptyDir would hide).
	MissingVolume string `json:"missingVolume,omitempty"`
	// MaxGlobs bounds the tail and the exclude globs of one container, each. Default 16.
	MaxGlobs int `json:"maxGlobs,omitempty"`
	// MaxUpstreams bounds the number of upstream addresses. Default 8.
	MaxUpstreams int `json:"maxUpstreams,omitempty"`
	// MetricsPort is the default port of the agent's /healthz and /metrics. Default 2021.
	MetricsPort int32 `json:"metricsPort,omitempty"`
	// DrainTimeout is how long the agent may ship what is left after SIGTERM; it is lowered
	// to half the pod's terminationGracePeriodSeconds when that is shorter. Default 20s.
	DrainTimeout config.Duration `json:"drainTimeout,omitzero"`
	// AgentLimits bound the agent's work and memory; zero fields take the agent's defaults
	// (config.Defaults).
	AgentLimits config.Limits `json:"agentLimits,omitzero"`
	// ReadFrom is the default of sidelog.io/read-from: head, tail or auto (default: head for
	// logs on volumes new with the pod, tail for logs on volumes that outlive it; see
	// AnnotationReadFrom).
	ReadFrom string `json:"readFrom,omitempty"`
	// IgnoreOlder is the default of sidelog.io/ignore-older, a duration ("168h"). Default none.
	IgnoreOlder config.Duration `json:"ignoreOlder,omitzero"`
	// TimeKey is the default of sidelog.io/time-key for containers whose parser is json.
	// Default none: records carry the time they were read.
	TimeKey string `json:"timeKey,omitempty"`
	// TimeFormat is the default of sidelog.io/time-format. Default rfc3339.
	TimeFormat string `json:"timeFormat,omitempty"`
	// RateLimit is the default of sidelog.io/rate-limit, each container's reading budget
	// ("1MiB/s", "1000 lines/s", both comma-separated). Default none.
	RateLimit string `json:"rateLimit,omitempty"`
	// MaxRateLimit is the most a pod or namespace may set sidelog.io/rate-limit to, in the same
	// grammar: a value above it, or none, is refused, and a dimension that the value leaves
	// open (or every one, with no value at all) takes the maximum's, as a LimitRange's max
	// is the default of a container that sets none. Default none: no maximum.
	MaxRateLimit string `json:"maxRateLimit,omitempty"`
	// AllowCleanup lets pods ask the agent to remove their rotated log files once shipped
	// (sidelog.io/cleanup), for which the agent mounts the volumes of those files read-write.
	// Default false: such pods are refused, and the agent mounts every log volume read-only.
	AllowCleanup bool `json:"allowCleanup,omitempty"`
	// CleanupSettle is how long a rotated file must have been left unwritten before the agent
	// removes it (sidelog.io/cleanup), a duration ("5m"). Default the agent's, 5m: a writer that
	// reopens its log on a signal or a timer after a rotation has long done so.
	CleanupSettle config.Duration `json:"cleanupSettle,omitzero"`
}

// AgentIdentity values.
const (
	IdentityApp      = "app"
	IdentityFixed    = "fixed"
	IdentityPlatform = "platform"
)

// StartupProbe values.
const (
	ProbeExec = "exec"
	ProbeNone = "none"
)

// MissingVolume values.
const (
	MissingVolumeRefuse   = "refuse"
	MissingVolumeEmptyDir = "emptyDir"
)

// DefaultAgentImage is the agent image of DefaultPolicy.
const DefaultAgentImage = "ghcr.io/sidelog/sidelog-agent:latest"

// Defaults of DefaultPolicy that are not the zero value.
const (
	defaultAgentID      = 65532
	defaultMaxGlobs     = 16
	defaultMaxUpstreams = 8
	defaultMetricsPort  = 2021
)

// DefaultPolicy returns the policy used when none is given, with every default filled in.
func DefaultPolicy() *Policy {
	return &Policy{
		AgentImage: DefaultAgentImage,
		AgentUser:  defaultAgentID,
		AgentGroup: defaultAgentID,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("50m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("200m"),
				corev1.ResourceMemory: resource.MustParse("128Mi"),
			},
		},
		AgentIdentity:    IdentityApp,
		StartupProbe:     ProbeExec,
		SidecarMode:      ModeNative,
		AllowPodOverride: policedOptions(),
		MissingVolume:    MissingVolumeRefuse,
		MaxGlobs:         defaultMaxGlobs,
		MaxUpstreams:     defaultMaxUpstreams,
		MetricsPort:      defaultMetricsPort,
		DrainTimeout:     config.Duration(config.DefaultDrainTimeout),
		ReadFrom:         ReadFromAuto,
		TimeFormat:       config.TimeRFC3339,
	}
}

// ParsePolicy reads a policy document strictly (an unknown field is an error naming it), fills
// in the defaults and validates it. Empty input is DefaultPolicy.
func ParsePolicy(data []byte) (*Policy, error) {
	empty, err := checkPolicyFields(data)
	if err != nil {
		return nil, err
	}
	if empty {
		return DefaultPolicy(), nil
	}
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("cluster policy: %w", err)
	}
	c, err := p.complete()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkPolicyFields names the first unknown field, at any depth, and the known one it is
// nearest to. The strict decoder would refuse it too, but without its path or a suggestion.
// It reports an empty document (nothing, or only comments) as empty.
func checkPolicyFields(data []byte) (empty bool, err error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return false, fmt.Errorf("cluster policy: %w", err)
	}
	if doc == nil {
		return true, nil
	}
	if _, ok := doc.(map[string]any); !ok {
		return false, fmt.Errorf("cluster policy: want a YAML mapping of fields, got %T", doc)
	}
	return false, checkFields(doc, reflect.TypeFor[Policy](), "")
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkFields checks the keys of the decoded YAML v against the JSON names of type t. Values of
// the wrong type are left to the decoder.
func checkFields(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		m, _ := v.(map[string]any)
		var known []string
		types := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			known = append(known, name)
			types[name] = f.Type
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, ok := types[k]
			if !ok {
				return unknownField(path+k, k, known)
			}
			if err := checkFields(m[k], ft, path+k+"."); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		s, _ := v.([]any)
		for i, e := range s {
			if err := checkFields(e, t.Elem(), fmt.Sprintf("%s[%d].", strings.TrimSuffix(path, "."), i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, _ := v.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := checkFields(m[k], t.Elem(), path+k+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func unknownField(path, name string, known []string) error {
	lower := strings.ToLower(name)
	best := slices.MinFunc(known, func(a, b string) int {
		return distance(lower, strings.ToLower(a)) - distance(lower, strings.ToLower(b))
	})
	if distance(lower, strings.ToLower(best)) <= max(2, len(best)/3) {
		return errorf(path, FromPolicy, "unknown field; did you mean %s?", best)
	}
	return errorf(path, FromPolicy, "unknown field; known fields: %s", strings.Join(known, ", "))
}

// complete returns a copy of p with the defaults filled in, or the first thing wrong with it.
func (p *Policy) complete() (*Policy, error) {
	if p == nil {
		return DefaultPolicy(), nil
	}
	d := DefaultPolicy()
	c := *p
	c.Upstream = nil // "upstream: []" is no upstream, as an absent field is
	if len(p.Upstream) > 0 {
		c.Upstream = slices.Clone(p.Upstream)
	}
	c.AllowPodOverride = slices.Clone(p.AllowPodOverride)
	c.Resources = *p.Resources.DeepCopy()
	c.AgentImage = cmp.Or(c.AgentImage, d.AgentImage)
	c.AgentUser = cmp.Or(c.AgentUser, d.AgentUser)
	c.AgentGroup = cmp.Or(c.AgentGroup, d.AgentGroup)
	c.AgentIdentity = cmp.Or(c.AgentIdentity, d.AgentIdentity)
	c.StartupProbe = cmp.Or(c.StartupProbe, d.StartupProbe)
	if len(c.Resources.Requests) == 0 && len(c.Resources.Limits) == 0 && len(c.Resources.Claims) == 0 {
		c.Resources = d.Resources
	}
	c.SidecarMode = cmp.Or(c.SidecarMode, d.SidecarMode)
	if p.AllowPodOverride == nil {
		c.AllowPodOverride = d.AllowPodOverride
	}
	c.MissingVolume = cmp.Or(c.MissingVolume, d.MissingVolume)
	c.MaxGlobs = cmp.Or(c.MaxGlobs, d.MaxGlobs)
	c.MaxUpstreams = cmp.Or(c.MaxUpstreams, d.MaxUpstreams)
	c.MetricsPort = cmp.Or(c.MetricsPort, d.MetricsPort)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, d.DrainTimeout)
	c.ReadFrom = cmp.Or(c.ReadFrom, d.ReadFrom)
	c.TimeFormat = cmp.Or(c.TimeFormat, d.TimeFormat)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// completed is complete for Inject, which only reads the policy: the completed copy of the
// policy last asked for is kept and shared (completing one costs a sixth of an injection), so,
// as for PolicyRevision, a policy must not be modified once it has been used, and what this
// returns must never be.
func (p *Policy) completed() (*Policy, error) {
	if last := lastCompleted.Load(); last != nil && last.policy == p {
		return last.completed, nil
	}
	c, err := p.complete()
	if err != nil {
		return nil, err
	}
	lastCompleted.Store(&completedOf{policy: p, completed: c})
	return c, nil
}

type completedOf struct {
	policy, completed *Policy
}

var lastCompleted atomic.Pointer[completedOf]

// validate reports the first thing wrong with a completed policy.
func (p *Policy) validate() error {
	bad := func(field, format string, args ...any) error {
		return errorf(field, FromPolicy, format, args...)
	}
	if strings.ContainsFunc(p.AgentImage, func(r rune) bool { return r <= ' ' }) {
		return bad("agentImage", "%q contains white space", p.AgentImage)
	}
	switch p.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return bad("imagePullPolicy", "got %q, want Always, IfNotPresent or Never", p.ImagePullPolicy)
	}
	if p.AgentUser < 0 {
		return bad("agentUser", "got %d, want a uid above 0: the agent never runs as root", p.AgentUser)
	}
	if p.AgentGroup < 0 {
		return bad("agentGroup", "got %d, want a gid above 0", p.AgentGroup)
	}
	switch p.AgentIdentity {
	case IdentityApp, IdentityFixed, IdentityPlatform:
	default:
		return bad("agentIdentity", "got %q, want %q, %q or %q", p.AgentIdentity, IdentityApp, IdentityFixed, IdentityPlatform)
	}
	switch p.StartupProbe {
	case ProbeExec, ProbeNone:
	default:
		return bad("startupProbe", "got %q, want %q or %q", p.StartupProbe, ProbeExec, ProbeNone)
	}
	if p.MaxGlobs < 0 {
		return bad("maxGlobs", "got %d, want a positive number", p.MaxGlobs)
	}
	if p.MaxUpstreams < 0 {
		return bad("maxUpstreams", "got %d, want a positive number", p.MaxUpstreams)
	}
	if p.UpstreamProtocol != "" {
		if _, err := parseProtocol(p.UpstreamProtocol); err != nil {
			return bad("upstreamProtocol", "%v", err)
		}
	}
	if len(p.Upstream) > 0 {
		if _, err := parseUpstream(strings.Join(p.Upstream, ","), p.MaxUpstreams); err != nil {
			return bad("upstream", "%v", err)
		}
		if err := checkUpstreamProtocol(p.Upstream, p.UpstreamProtocol); err != nil {
			return bad("upstream", "%v", err)
		}
	}
	if p.UpstreamHeaders != "" {
		if _, err := parseSecretName(p.UpstreamHeaders); err != nil {
			return bad("upstreamHeaders", "%v", err)
		}
	}
	if field, err := config.CheckMessage(p.UpstreamMode, p.UpstreamCompression); err != nil {
		return bad(map[string]string{"mode": "upstreamMode", "compression": "upstreamCompression"}[field], "%v", err)
	}
	if p.UpstreamServerName != "" {
		if _, err := parseServerName(p.UpstreamServerName); err != nil {
			return bad("upstreamServerName", "%v", err)
		}
	}
	if p.UpstreamCA != "" {
		if _, err := parseSecretRef(p.UpstreamCA, DefaultCAKey); err != nil {
			return bad("upstreamCA", "%v", err)
		}
	}
	if p.UpstreamSharedKey != "" {
		if _, err := parseSecretRef(p.UpstreamSharedKey, DefaultSharedKeyKey); err != nil {
			return bad("upstreamSharedKey", "%v", err)
		}
	}
	if p.UpstreamUser != "" {
		if _, err := parseUserRef(p.UpstreamUser); err != nil {
			return bad("upstreamUser", "%v", err)
		}
	}
	if err := checkResources(p.Resources); err != nil {
		return err
	}
	if _, err := parseMode(p.SidecarMode); err != nil {
		return bad("sidecarMode", "%v", err)
	}
	if _, err := nativeSupported(p.KubernetesVersion); err != nil {
		return bad("kubernetesVersion", "%v", err)
	}
	allowed := append([]string{optInject, optTail}, policedOptions()...)
	for _, name := range p.AllowPodOverride {
		if slices.Contains(allowed, name) {
			continue
		}
		hint := ""
		for _, a := range allowed {
			if distance(name, a) <= max(2, len(a)/3) {
				hint = fmt.Sprintf(" (did you mean %s?)", a)
				break
			}
		}
		return bad("allowPodOverride", "unknown option %q%s: want names from %s", name, hint, strings.Join(policedOptions(), ", "))
	}
	switch p.MissingVolume {
	case MissingVolumeRefuse, MissingVolumeEmptyDir:
	default:
		return bad("missingVolume", "got %q, want %q or %q", p.MissingVolume, MissingVolumeRefuse, MissingVolumeEmptyDir)
	}
	if p.MetricsPort < 1 || p.MetricsPort > 65535 {
		return bad("metricsPort", "got %d, want a port number from 1 to 65535", p.MetricsPort)
	}
	if p.DrainTimeout < 0 {
		return bad("drainTimeout", "got %s, want a positive duration such as 20s", p.DrainTimeout.D())
	}
	if field := p.AgentLimits.Negative(); field != "" {
		return bad("agentLimits."+field, "must not be negative")
	}
	if _, err := parseReadFrom(p.ReadFrom); err != nil {
		return bad("readFrom", "%v", err)
	}
	if p.IgnoreOlder < 0 {
		return bad("ignoreOlder", "got %s, want a positive duration such as 168h", p.IgnoreOlder.D())
	}
	if p.CleanupSettle < 0 {
		return bad("cleanupSettle", "got %s, want a positive duration such as 5m", p.CleanupSettle.D())
	}
	if p.TimeKey != "" {
		if _, err := parseTimeKey(p.TimeKey); err != nil {
			return bad("timeKey", "%v", err)
		}
	}
	if err := p.validateRateLimits(); err != nil {
		return err
	}
	if f, err := parseTimeFormat(p.TimeFormat); err != nil {
		return bad("timeFormat", "%v", err)
	} else if f != p.TimeFormat {
		return bad("timeFormat", "got %q, want %q", p.TimeFormat, f)
	}
	return nil
}

// agentResources are the resources the agent may ask for.
var agentResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}

func checkResources(r corev1.ResourceRequirements) error {
	if len(r.Claims) > 0 {
		return errorf("resources.claims", FromPolicy, "the agent claims no dynamic resources; remove it")
	}
	for _, list := range []struct {
		name string
		l    corev1.ResourceList
	}{{"requests", r.Requests}, {"limits", r.Limits}} {
		for _, name := range slices.Sorted(func(yield func(corev1.ResourceName) bool) {
			for k := range list.l {
				if !yield(k) {
					return
				}
			}
		}) {
			field := "resources." + list.name + "." + string(name)
			if !slices.Contains(agentResources, name) {
				return errorf(field, FromPolicy, "unknown resource: want cpu, memory or ephemeral-storage")
			}
			if q := list.l[name]; q.Sign() <= 0 {
				return errorf(field, FromPolicy, "got %s, want more than zero", q.String())
			}
		}
	}
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			return errorf("resources.requests."+string(name), FromPolicy, "%s is more than the limit %s", req.String(), lim.String())
		}
	}
	return nil
}

var versionPattern = regexp.MustCompile(`^v?(\d+)\.(\d+)`)

// nativeSinceMinor is the first Kubernetes 1.x with native sidecars on by default.
const nativeSinceMinor = 29

// nativeSupported reports whether a cluster of version v runs native sidecars: true for 1.29
// and later and for an unknown (empty) version.
func nativeSupported(v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	m := versionPattern.FindStringSubmatch(v)
	if m == nil {
		return false, fmt.Errorf("got %q, want a Kubernetes version such as v1.29.3", v)
	}
	major, err1 := strconv.Atoi(m[1])
	minor, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("got %q, want a Kubernetes version such as v1.29.3", v)
	}
	return major > 1 || major == 1 && minor >= nativeSinceMinor, nil
}

// drainTimeout is the policy's drain timeout, shortened to half the grace period (at least a
// second) when the pod's grace period would not leave the agent time to use it all.
func drainTimeout(policy time.Duration, graceSeconds *int64) (time.Duration, bool) {
	if graceSeconds == nil || time.Duration(*graceSeconds)*time.Second > policy {
		return policy, false
	}
	return max(time.Duration(*graceSeconds)*time.Second/2, time.Second), true
}
