package injector

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const allowCleanup = "upstream: [fluentd.logging:24224]\nallowCleanup: true\n"

// TestInjectRefusesCleanup pins every refusal of sidelog.io/cleanup: each names the annotation
// and says what is expected.
func TestInjectRefusesCleanup(t *testing.T) {
	rotating := func(more ...string) map[string]string {
		return tailApp(append([]string{AnnotationTail + ".app", "/var/log/app/app.log*"}, more...)...)
	}
	for _, tt := range []struct {
		name   string
		ann    map[string]string
		ns     map[string]string
		policy string
		pod    func(*corev1.Pod)
		want   string
	}{
		{name: "policy does not allow it", ann: rotating(AnnotationCleanup+".app", "/var/log/app/app.log.*"), policy: "upstream: [fluentd.logging:24224]\n",
			want: `sidelog.io/cleanup.app: the cluster policy does not let the agent remove files (allowCleanup: false); remove this annotation, or ask the cluster admin for allowCleanup: true`},
		{name: "on a namespace", ann: rotating(), ns: map[string]string{AnnotationCleanup: "/var/log/app/app.log.*"}, policy: allowCleanup,
			want: `namespace annotation sidelog.io/cleanup: cleanup globs are set on pods, not namespaces: only a pod knows which files it rotates`},
		{name: "equal to the tail glob", ann: tailApp(AnnotationCleanup+".app", "/var/log/app/*.log"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/*.log matches every file that tail glob /var/log/app/*.log of container "app" names, the files being written: name the rotated files only, such as /var/log/app/app.log.*`},
		{name: "covers the tail glob", ann: tailApp(AnnotationCleanup+".app", "/var/log/app/*.l*"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/*.l* matches every file that tail glob /var/log/app/*.log of container "app" names, the files being written: name the rotated files only, such as /var/log/app/app.log.*`},
		{name: "matches the live name a tail glob spells out", ann: rotating(AnnotationCleanup+".app", "/var/log/app/app*.log"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/app*.log matches /var/log/app/app.log, the file that tail glob /var/log/app/app.log* of container "app" names, which is the file being written: name the rotated files only, such as /var/log/app/app.log.*`},
		{name: "matches another container's live file", ann: tailApp(AnnotationTail+".app", "/work/*.log*", AnnotationTail+".worker", "/work/worker.log",
			AnnotationCleanup+".app", "/work/w*"),
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts[0] = corev1.VolumeMount{Name: "work", MountPath: "/work"}
			}, policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /work/w* matches every file that tail glob /work/worker.log of container "worker" names, the files being written: name the rotated files only, such as /work/worker.log.*`},
		{name: "every file in the directory", ann: rotating(AnnotationCleanup+".app", "/var/log/app/*"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/* matches every file in /var/log/app, the file being written included: name the rotated files only, such as /var/log/app/app.log.* (logrotate, Python's RotatingFileHandler) or /var/log/app/app.*.log (logback)`},
		{name: "every file below", ann: tailApp(AnnotationTail+".app", "/var/log/app/**", AnnotationCleanup+".app", "/var/log/app/**"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/** matches every file in /var/log/app, the file being written included: name the rotated files only, such as /var/log/app/app.log.* (logrotate, Python's RotatingFileHandler) or /var/log/app/app.*.log (logback)`},
		{name: "nested deeper than any log directory", ann: tailApp(AnnotationTail+".app", "/var/log/app/**",
			AnnotationCleanup+".app", "/var/log/app"+strings.Repeat("/a", 70)+"/app.log.*"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/a/a/a/a/a/a/a/a/a/a/a/a/a/a... is 162 bytes long and 74 segments deep: want at most 1024 bytes and 64 segments, as deep as any log directory goes`},
		{name: "compressed rotations", ann: rotating(AnnotationCleanup+".app", "/var/log/app/app.log.*.gz"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/app.log.*.gz names compressed rotations, which the agent does not read and so never sees delivered: rotate without compression (logrotate's nocompress) for the agent to remove the files, or leave compressed ones to logrotate's rotate and maxage`},
		{name: "outside the tail globs", ann: tailApp(AnnotationCleanup+".app", "/var/log/app/app.log.*"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: /var/log/app/app.log.* is not matched by the tail globs of container "app" (/var/log/app/*.log): the agent removes only files that it read to their end; add the rotated files to sidelog.io/tail.app, such as /var/log/app/app.log.*`},
		{name: "pod-wide, outside one container's tail globs", ann: tailApp(AnnotationTail+".app", "/var/log/app/app.log*", AnnotationTail+".worker", "/work/*.log",
			AnnotationCleanup, "/var/log/app/app.log.*"), policy: allowCleanup,
			want: `sidelog.io/cleanup: /var/log/app/app.log.* is not matched by the tail globs of container "worker" (/work/*.log): the agent removes only files that it read to their end; add the rotated files to sidelog.io/tail.worker, such as /var/log/app/app.log.*`},
		{name: "container not tailed", ann: rotating(AnnotationCleanup+".worker", "/work/app.log.*"), policy: allowCleanup,
			want: `sidelog.io/cleanup.worker: container "worker" has no tail globs (sidelog.io/tail.worker), so this has no effect`},
		{name: "no such container", ann: rotating(AnnotationCleanup+".web", "/var/log/app/app.log.*"), policy: allowCleanup,
			want: `sidelog.io/cleanup.web: the pod has no app container "web"; its app containers are app, worker`},
		{name: "not absolute", ann: rotating(AnnotationCleanup+".app", "app.log.*"), policy: allowCleanup,
			want: `sidelog.io/cleanup.app: "app.log.*" is not absolute: it must start with /`},
		{name: "volume read-only in the app", ann: rotating(AnnotationCleanup+".app", "/var/log/app/app.log.*"), policy: allowCleanup,
			pod:  func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].ReadOnly = true },
			want: `sidelog.io/cleanup.app: /var/log/app/app.log.* is on volume "logs", which container "app" mounts read-only: it writes no files there, so none to remove`},
		{name: "read-only claim", ann: rotating(AnnotationCleanup+".app", "/var/log/app/app.log.*"), policy: allowCleanup,
			pod: func(p *corev1.Pod) {
				p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "logs", ReadOnly: true}}
			},
			want: `sidelog.io/cleanup.app: /var/log/app/app.log.* is on volume "logs", a persistentVolumeClaim with readOnly: true, on which the agent cannot remove files`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod(tt.ann)
			if tt.pod != nil {
				tt.pod(pod)
			}
			p, err := ParsePolicy([]byte(tt.policy))
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
			}
			_, _, err = Inject(pod, tt.ns, p)
			if err == nil {
				t.Fatalf("Inject succeeded, want error %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error is %T, want *Error", err)
			}
		})
	}
}

// TestInjectCleanup: allowed, the agent gets the cleanup globs and the volume they are on
// read-write; without them, every log volume stays read-only.
func TestInjectCleanup(t *testing.T) {
	p, err := ParsePolicy([]byte(allowCleanup))
	if err != nil {
		t.Fatal(err)
	}
	ann := tailApp(AnnotationTail+".app", "/var/log/app/app.log*", AnnotationTail+".worker", "/work/*.log",
		AnnotationCleanup+".app", "/var/log/app/app.log.*, /var/log/app/app.log-*")
	out, _, err := Inject(basePod(ann), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	a := agentOf(out)
	ro := map[string]bool{}
	for _, m := range a.VolumeMounts {
		ro[m.Name] = m.ReadOnly
	}
	if ro["logs"] || !ro["work"] {
		t.Errorf("agent mounts read-only: logs %v, work %v; want false (cleanup), true", ro["logs"], ro["work"])
	}
	cfg := agentConfigOf(t, a)
	if got := cfg.Inputs[0].Cleanup; !slices.Equal(got, []string{"/var/log/app/app.log.*", "/var/log/app/app.log-*"}) || cfg.Inputs[1].Cleanup != nil {
		t.Errorf("cleanup globs %q, %q; want app's on app only", got, cfg.Inputs[1].Cleanup)
	}

	delete(ann, AnnotationCleanup+".app")
	out, _, err = Inject(basePod(ann), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range agentOf(out).VolumeMounts {
		if (m.Name == "logs" || m.Name == "work") && !m.ReadOnly {
			t.Errorf("without cleanup, the agent mounts %q read-write", m.Name)
		}
	}
}

func TestGlobCovers(t *testing.T) {
	for _, tt := range []struct {
		outer, inner string
		want         bool
	}{
		{"/var/log/app/*.log", "/var/log/app/*.log", true},
		{"/var/log/app/app.log*", "/var/log/app/app.log.*", true},
		{"/var/log/app/app.log*", "/var/log/app/app.log-*", true},
		{"/var/log/app/*.log", "/var/log/app/app.*.log", true},
		{"/var/log/app/*", "/var/log/app/app.log.[0-9]", true},
		{"/var/log/app/app.log.?", "/var/log/app/app.log.[0-9]", true},
		{"/var/log/app/app.log.[0-9]", "/var/log/app/app.log.1", true},
		{"/var/log/**/*.log", "/var/log/app/old/app.*.log", true},
		{"/var/log/**", "/var/log/app/x", true},
		{"/var/log/app/*.log", "/var/log/app/app.log.*", false},
		{"/var/log/app/app.log*", "/var/log/app/*.log", false},
		{"/var/log/app/app.log.[0-9]", "/var/log/app/app.log.?", false},
		{"/var/log/app/*.log", "/var/log/**/*.log", false},
		{"/var/log/app/*", "/var/log/app/*/x", false},
		{"/var/log/app/a*", "/var/log/app/*a", false},
		{"/var/log/app/app.*", "/var/log/app/app.log", true},
		{"/var/log/app/app.log.*", "/var/log/app/app.log", false},
		{"/var/log/app/app.\\*", "/var/log/app/app.*", false},
		{"/var/log/app/app.*", "/var/log/app/app.\\*", true},
	} {
		if got := globCovers(tt.outer, tt.inner); got != tt.want {
			t.Errorf("globCovers(%q, %q) = %v, want %v", tt.outer, tt.inner, got, tt.want)
		}
	}
}

// TestInjectCleanupLiveFileListedApart: tail globs that list the live file apart from its
// rotations (app.log and app.log.*, as Fluent Bit users often write them) name the rotations
// alone in a glob of their own; a cleanup glob that covers that glob leaves the live file alone
// and is taken. Without the live file beside them, the same glob is still refused.
func TestInjectCleanupLiveFileListedApart(t *testing.T) {
	p, err := ParsePolicy([]byte(allowCleanup))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ tail, cleanup string }{
		{"/var/log/app/app.log,/var/log/app/app.log.*", "/var/log/app/app.log.*"},
		{"/var/log/app/app.log, /var/log/app/app.log.[0-9]", "/var/log/app/app.log.[0-9]"},
		{"/var/log/app/*.log,/var/log/app/*.log.*", "/var/log/app/*.log.*"},
	} {
		ann := tailApp(AnnotationTail+".app", tt.tail, AnnotationCleanup+".app", tt.cleanup)
		if _, _, err := Inject(basePod(ann), nil, p); err != nil {
			t.Errorf("tail %s, cleanup %s: %v; want it taken", tt.tail, tt.cleanup, err)
		}
	}
	for _, tt := range []struct{ tail, cleanup string }{
		{"/var/log/app/app.log.*", "/var/log/app/app.log.*"},                            // no live file named
		{"/var/log/app/app.log,/var/log/app/*.log", "/var/log/app/*.log"},               // the live file is covered too
		{"/var/log/app/other/app.log,/var/log/app/app.log.*", "/var/log/app/app.log.*"}, // not beside them
		{"/var/log/app/error.log,/var/log/app/access*.log", "/var/log/app/access*.log"}, // access.log is live too
	} {
		ann := tailApp(AnnotationTail+".app", tt.tail, AnnotationCleanup+".app", tt.cleanup)
		if _, _, err := Inject(basePod(ann), nil, p); err == nil {
			t.Errorf("tail %s, cleanup %s taken; want it refused", tt.tail, tt.cleanup)
		}
	}
}
