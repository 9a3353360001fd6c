package injector

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/sidecar/config"
)

var deploymentWorkload = Workload{
	Owners:          []config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}, {Kind: "Deployment", Name: "web"}},
	NamespaceLabels: map[string]string{"team": "payments", "kubernetes.io/metadata.name": "shop"},
}

// agentDoc decodes the agent's configuration of pod as the agent does.
func agentDoc(t *testing.T, pod *corev1.Pod) *config.Config {
	t.Helper()
	env := agentConfigEnv(pod)
	if env == nil {
		t.Fatal("no agent configuration")
	}
	c, err := config.Parse([]byte(env.Value))
	if err != nil {
		t.Fatalf("the agent refuses its configuration: %v", err)
	}
	return c
}

// TestSetWorkload: on every golden pod that is injected, the workload lands in a configuration
// the agent accepts and changes nothing else; setting it again changes nothing, Inject finds the
// pod already injected (the workload is no input of the digest), and an opt-out still removes
// the agent whole.
func TestSetWorkload(t *testing.T) {
	for _, file := range goldenInputs(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c, p := loadCase(t, file)
			injected, o, err := Inject(&c.Pod, c.Namespace, p)
			if err != nil || !o.Injected {
				t.Skipf("not injected: %v %+v", err, o)
			}
			before := agentDoc(t, injected)
			pod := injected.DeepCopy()
			changed, err := SetWorkload(pod, deploymentWorkload)
			if err != nil || !changed {
				t.Fatalf("SetWorkload = %v, %v, want changed", changed, err)
			}
			after := agentDoc(t, pod)
			if diff := cmp.Diff(deploymentWorkload, Workload{Owners: after.Owners, NamespaceLabels: after.NamespaceLabels}); diff != "" {
				t.Errorf("workload in the configuration (-want +got):\n%s", diff)
			}
			after.Owners, after.NamespaceLabels = before.Owners, before.NamespaceLabels
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("SetWorkload changed more of the configuration (-before +after):\n%s", diff)
			}
			agentConfigEnv(injected).Value = agentConfigEnv(pod).Value
			if diff := cmp.Diff(injected, pod); diff != "" {
				t.Errorf("SetWorkload changed more than the agent's configuration (-want +got):\n%s", diff)
			}

			again := pod.DeepCopy()
			if changed, err := SetWorkload(again, Workload{Owners: deploymentWorkload.Owners, NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "shop", "team": "payments"}}); err != nil || changed {
				t.Errorf("the same workload again: changed %v, %v", changed, err)
			}
			reinjected, o, err := Inject(again, c.Namespace, p)
			if err != nil || o.Changed || o.Reason != "already injected" || cmp.Diff(again, reinjected) != "" {
				t.Errorf("Inject after SetWorkload: %v %+v, want already injected, unchanged", err, o)
			}

			optedOut := pod.DeepCopy()
			optedOut.Annotations[AnnotationInject] = "false"
			removed, _, err := Inject(optedOut, c.Namespace, p)
			if err != nil || hasAgent(&removed.Spec) {
				t.Errorf("opting out after SetWorkload: %v, agent still there: %v", err, hasAgent(&removed.Spec))
			}
		})
	}
}

// TestSetWorkloadMerges: a nil field keeps what the configuration says (sidelog inject's
// workload until the webhook knows better), an empty one says "none".
func TestSetWorkloadMerges(t *testing.T) {
	pod, _, err := Inject(basePod(tailApp()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	offline := []config.Owner{{Kind: "Deployment", Name: "web"}}
	for _, step := range []struct {
		name       string
		set        Workload
		changed    bool
		wantOwners []config.Owner
		wantLabels map[string]string
	}{
		{"sidelog inject: the workload it injects", Workload{Owners: offline}, true, offline, nil},
		{"nothing known", Workload{}, false, offline, nil},
		{"labels only", Workload{NamespaceLabels: map[string]string{"team": "a"}}, true, offline, map[string]string{"team": "a"}},
		{"the webhook: owners resolved", deploymentWorkload, true, deploymentWorkload.Owners, deploymentWorkload.NamespaceLabels},
		{"a namespace without labels", Workload{NamespaceLabels: map[string]string{}}, true, deploymentWorkload.Owners, map[string]string{}},
		{"no controller", Workload{Owners: []config.Owner{}}, true, nil, map[string]string{}},
	} {
		changed, err := SetWorkload(pod, step.set)
		if err != nil || changed != step.changed {
			t.Fatalf("%s: SetWorkload = %v, %v, want changed %v", step.name, changed, err, step.changed)
		}
		c := agentDoc(t, pod)
		if diff := cmp.Diff(step.wantOwners, c.Owners); diff != "" {
			t.Errorf("%s: owners (-want +got):\n%s", step.name, diff)
		}
		if diff := cmp.Diff(step.wantLabels, c.NamespaceLabels); diff != "" || (step.wantLabels == nil) != (c.NamespaceLabels == nil) {
			t.Errorf("%s: namespace labels %#v, want %#v", step.name, c.NamespaceLabels, step.wantLabels)
		}
	}
}

func TestSetWorkloadRefuses(t *testing.T) {
	plain := basePod(tailApp())
	if changed, err := SetWorkload(plain, deploymentWorkload); err != nil || changed {
		t.Errorf("a pod without the agent: changed %v, %v, want left alone", changed, err)
	}
	pod, _, err := Inject(plain, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	huge := map[string]string{}
	for i := range 600 {
		huge[strings.Repeat("k", 60)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = strings.Repeat("v", 63)
	}
	env := agentConfigEnv(pod)
	was := env.Value
	for _, tt := range []struct {
		name string
		set  Workload
		want string
	}{
		{"too big for the environment", Workload{NamespaceLabels: huge}, "more than the 65536 an environment variable can safely carry"},
		{"a kind that is no kind", Workload{Owners: []config.Owner{{Kind: "apps/v1", Name: "x"}}}, `owners[0].kind: got "apps/v1"`},
	} {
		if changed, err := SetWorkload(pod, tt.set); changed || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: changed %v, err %v, want an error containing %q", tt.name, changed, err, tt.want)
		}
		if env.Value != was {
			t.Errorf("%s: the configuration changed although SetWorkload failed", tt.name)
		}
	}
	env.Value = strings.Replace(was, `"version"`, `"fromTheFuture":1,"version"`, 1)
	if _, err := SetWorkload(pod, deploymentWorkload); err == nil || !strings.Contains(err.Error(), `unknown field "fromTheFuture"`) {
		t.Errorf("a configuration this injector cannot read: %v, want an error naming the field", err)
	}
}

// FuzzSetWorkload: whatever owners and labels the webhook passes, SetWorkload never panics,
// leaves the pod unchanged when it refuses them, writes a configuration the agent accepts when it
// takes them, and changes nothing when given them again.
func FuzzSetWorkload(f *testing.F) {
	f.Add("ReplicaSet", "web-5d8f", "Deployment", "web", "team", "payments")
	f.Add("Job", "nightly-2904", "CronJob", "nightly", "", "")
	f.Add("apps/v1", "x", "", "", "kubernetes.io/metadata.name", "shop")
	f.Add("Rollout", strings.Repeat("n", 254), "Ä", "y", "k", "\x00")
	base, _, err := Inject(basePod(tailApp()), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind1, name1, kind2, name2, key, value string) {
		owners := []config.Owner{{Kind: kind1, Name: name1}}
		if kind2 != "" || name2 != "" {
			owners = append(owners, config.Owner{Kind: kind2, Name: name2})
		}
		w := Workload{Owners: owners, NamespaceLabels: map[string]string{key: value}}
		pod := base.DeepCopy()
		changed, err := SetWorkload(pod, w)
		if err != nil {
			if changed || cmp.Diff(base, pod) != "" {
				t.Fatalf("refused (%v) but changed the pod", err)
			}
			return
		}
		if !changed {
			t.Fatalf("took %+v but changed nothing", w)
		}
		c, err := config.Parse([]byte(agentConfigEnv(pod).Value))
		if err != nil {
			t.Fatalf("wrote a configuration the agent refuses: %v", err)
		}
		if !slices.Equal(c.Owners, owners) || c.NamespaceLabels[key] != value {
			t.Fatalf("configuration says %v %v, want %v", c.Owners, c.NamespaceLabels, w)
		}
		if again, err := SetWorkload(pod, w); again || err != nil {
			t.Fatalf("the same workload again: changed %v, %v", again, err)
		}
	})
}

// TestInjectFor: on every golden pod, InjectFor gives the pod that Inject and then SetWorkload
// give, with the same outcome but for the change: the workload encoded with the rest of the
// configuration is the same document. Given the pod again it changes nothing; given a pod
// injected without a workload (sidelog inject's output) it adds the workload only.
func TestInjectFor(t *testing.T) {
	for _, file := range goldenInputs(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c, p := loadCase(t, file)
			want, wantOut, wantErr := Inject(&c.Pod, c.Namespace, p)
			got, gotOut, gotErr := InjectFor(&c.Pod, c.Namespace, p, deploymentWorkload)
			if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() {
				t.Fatalf("InjectFor: %v, Inject: %v", gotErr, wantErr)
			}
			if wantErr != nil {
				return
			}
			if wantOut.Injected {
				if _, err := SetWorkload(want, deploymentWorkload); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("InjectFor differs from Inject and SetWorkload (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantOut, gotOut); diff != "" {
				t.Errorf("outcome (-Inject +InjectFor):\n%s", diff)
			}
			if !gotOut.Injected {
				return
			}

			again, o, err := InjectFor(got, c.Namespace, p, deploymentWorkload)
			if err != nil || o.Changed || o.WorkloadOnly || cmp.Diff(got, again) != "" {
				t.Errorf("InjectFor of its own output: %v %+v, want unchanged", err, o)
			}
			offline, _, err := Inject(&c.Pod, c.Namespace, p)
			if err != nil {
				t.Fatal(err)
			}
			completed, o, err := InjectFor(offline, c.Namespace, p, deploymentWorkload)
			if err != nil || !o.Changed || !o.WorkloadOnly || o.Reason != "already injected" {
				t.Errorf("InjectFor of a pod injected without its workload: %v %+v, want the workload only", err, o)
			}
			if diff := cmp.Diff(got, completed); diff != "" {
				t.Errorf("completed pod differs from the one injected with its workload (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInjectForWorkloadTooBig: a workload the agent's configuration cannot carry is left out
// with a warning, and the pod is injected all the same.
func TestInjectForWorkloadTooBig(t *testing.T) {
	huge := map[string]string{}
	for i := range 600 {
		huge[strings.Repeat("k", 60)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = strings.Repeat("v", 63)
	}
	pod, o, err := InjectFor(basePod(tailApp()), nil, nil, Workload{NamespaceLabels: huge})
	if err != nil || !o.Injected || !o.Changed {
		t.Fatalf("InjectFor: %v %+v, want injected", err, o)
	}
	if c := agentDoc(t, pod); c.NamespaceLabels != nil {
		t.Errorf("the configuration carries %d namespace labels, want none", len(c.NamespaceLabels))
	}
	if !slices.ContainsFunc(o.Warnings, func(w string) bool {
		return strings.Contains(w, "more than the 65536 an environment variable can safely carry")
	}) {
		t.Errorf("warnings %q, want one saying the labels were left out", o.Warnings)
	}
}
