package injector

import (
	"fmt"
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
		{"more labels than records should carry", Workload{NamespaceLabels: huge}, "more than the 8192 that every record may carry"},
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

// TestSetWorkloadTooManyLabels: a namespace whose labels would outgrow the agent's environment
// variable costs the records those labels, not the pod's workload: the owners are a few short
// names, and they are what aggregators route by.
func TestSetWorkloadTooManyLabels(t *testing.T) {
	pod, _, err := Inject(basePod(tailApp()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	huge := map[string]string{}
	for i := range 1200 {
		huge[fmt.Sprintf("example.com/label-%04d", i)] = strings.Repeat("v", 63)
	}
	w := Workload{Owners: deploymentWorkload.Owners, NamespaceLabels: huge}
	changed, err := SetWorkload(pod, w)
	if err == nil || !strings.Contains(err.Error(), "1200 labels") || !strings.Contains(err.Error(), "without them") {
		t.Errorf("SetWorkload = %v, want an error that says the 1200 labels are left out", err)
	}
	if !changed {
		t.Fatal("SetWorkload left the configuration as it was, want the owners written")
	}
	c := agentDoc(t, pod)
	if diff := cmp.Diff(w.Owners, c.Owners); diff != "" {
		t.Errorf("owners (-want +got):\n%s", diff)
	}
	if c.NamespaceLabels != nil {
		t.Errorf("namespace labels %d, want none (not known)", len(c.NamespaceLabels))
	}
	// The webhook admits the same pod again (a reinvocation): nothing more to change.
	if changed, err := SetWorkload(pod, w); changed || err == nil {
		t.Errorf("the same workload again: changed %v, %v, want unchanged with the same error", changed, err)
	}

	// Up to maxNamespaceLabelBytes they are kept; past it, or past what the environment
	// variable carries with the rest of the configuration, they are left out.
	atBudget := map[string]string{"team": strings.Repeat("t", maxNamespaceLabelBytes-len("team"))}
	if _, err := SetWorkload(pod, Workload{NamespaceLabels: atBudget}); err != nil || agentDoc(t, pod).NamespaceLabels == nil {
		t.Errorf("labels of %d bytes: %v, want them written", maxNamespaceLabelBytes, err)
	}
	atBudget["team"] += "t"
	if _, err := SetWorkload(pod, Workload{NamespaceLabels: atBudget}); err == nil || agentDoc(t, pod).NamespaceLabels != nil {
		t.Errorf("labels of %d bytes: %v, want them left out with an error", maxNamespaceLabelBytes+1, err)
	}
	big := agentDoc(t, pod)
	big.NamespaceLabels = nil
	var b []byte
	for i := 0; len(b) < maxConfigBytes-6000; i++ { // room for the owners, not for 8 kB of labels
		big.Inputs[0].Paths = append(big.Inputs[0].Paths, fmt.Sprintf("/var/log/app/%s-%03d/*.log", strings.Repeat("d", 40), i))
		if b, err = big.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	agentConfigEnv(pod).Value = string(b)
	few := map[string]string{"team": strings.Repeat("t", 4000), "env": strings.Repeat("e", 4000)}
	changed, err = SetWorkload(pod, Workload{Owners: []config.Owner{{Kind: "StatefulSet", Name: "db"}}, NamespaceLabels: few})
	if !changed || err == nil || !strings.Contains(err.Error(), "an environment variable can safely carry") {
		t.Errorf("a configuration near its bound: changed %v, %v, want the owners written and the labels left out", changed, err)
	}
	if c := agentDoc(t, pod); c.NamespaceLabels != nil || len(c.Owners) != 1 {
		t.Errorf("a configuration near its bound: owners %v, %d namespace labels; want the StatefulSet and none", c.Owners, len(c.NamespaceLabels))
	}
}

// FuzzSetWorkload: whatever owners and labels the webhook passes, SetWorkload never panics,
// leaves the pod unchanged when it refuses them (or writes the owners alone when the labels are
// too large), writes a configuration the agent accepts when it
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
		if err != nil && changed {
			// A label too large for the environment: the owners go without it.
			if c, perr := config.Parse([]byte(agentConfigEnv(pod).Value)); perr != nil || !slices.Equal(c.Owners, owners) || c.NamespaceLabels != nil {
				t.Fatalf("took the owners only (%v), but the configuration is %+v, %v", err, c, perr)
			}
			return
		}
		if err != nil {
			if cmp.Diff(base, pod) != "" {
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
	owners := []config.Owner{{Kind: "StatefulSet", Name: "db"}}
	pod, o, err := InjectFor(basePod(tailApp()), nil, nil, Workload{Owners: owners, NamespaceLabels: huge})
	if err != nil || !o.Injected || !o.Changed {
		t.Fatalf("InjectFor: %v %+v, want injected", err, o)
	}
	if c := agentDoc(t, pod); c.NamespaceLabels != nil || !slices.Equal(c.Owners, owners) {
		t.Errorf("the configuration carries owners %v and %d namespace labels, want %v and none", c.Owners, len(c.NamespaceLabels), owners)
	}
	if !slices.ContainsFunc(o.Warnings, func(w string) bool {
		return strings.Contains(w, "600 labels") && strings.Contains(w, "records go without them")
	}) {
		t.Errorf("warnings %q, want one saying the labels were left out", o.Warnings)
	}
}

// TestSetWorkloadIncompleteOwners: owners that stop short of the workload (the webhook's lookup
// failed) do not replace the workload sidelog inject wrote, but are better than none.
func TestSetWorkloadIncompleteOwners(t *testing.T) {
	offline := []config.Owner{{Kind: "Deployment", Name: "web"}}
	partial := []config.Owner{{Kind: "ReplicaSet", Name: "web-5d8f"}}
	pod, _, err := Inject(basePod(tailApp()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := SetWorkload(pod, Workload{Owners: partial, OwnersIncomplete: true}); err != nil || !changed {
		t.Fatalf("incomplete owners into a configuration without any: changed %v, %v; want them written", changed, err)
	}
	if got := agentDoc(t, pod).Owners; !slices.Equal(got, partial) {
		t.Errorf("owners %v, want %v", got, partial)
	}
	if _, err := SetWorkload(pod, Workload{Owners: offline}); err != nil {
		t.Fatal(err)
	}
	changed, err := SetWorkload(pod, Workload{Owners: partial, OwnersIncomplete: true, NamespaceLabels: map[string]string{"team": "a"}})
	if err != nil || !changed {
		t.Fatalf("SetWorkload = %v, %v; want the labels written", changed, err)
	}
	if got := agentDoc(t, pod).Owners; !slices.Equal(got, offline) {
		t.Errorf("owners %v after a failed lookup, want sidelog inject's %v kept", got, offline)
	}
}

// TestReadsWorkload: on every golden input, a pod for which ReadsWorkload is false is given the
// same by InjectFor, whatever the workload, as by Inject (so the webhook need not look its owners
// up), and a pod InjectFor injects, or that was injected before, reads it.
func TestReadsWorkload(t *testing.T) {
	reads := 0
	for _, file := range goldenInputs(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c, p := loadCase(t, file)
			want, wantOut, wantErr := Inject(&c.Pod, c.Namespace, p)
			got, gotOut, gotErr := InjectFor(&c.Pod, c.Namespace, p, deploymentWorkload)
			if ReadsWorkload(&c.Pod, c.Namespace) {
				reads++
			} else if gotOut.Injected || fmt.Sprint(wantErr) != fmt.Sprint(gotErr) || cmp.Diff(want, got) != "" || cmp.Diff(wantOut, gotOut) != "" {
				t.Fatalf("ReadsWorkload is false, but InjectFor gives %+v (%v) where Inject gives %+v (%v)", gotOut, gotErr, wantOut, wantErr)
			}
			if wantErr == nil && wantOut.Injected && !ReadsWorkload(want, c.Namespace) {
				t.Errorf("ReadsWorkload is false for the pod Inject injected")
			}
		})
	}
	if reads == 0 {
		t.Fatal("no golden input reads a workload: the test shows nothing")
	}
}

// TestInjectForLabelsLeftOut: InjectFor with a namespace's labels too many for the records gives
// the pod that Inject then SetWorkload give: the warning that they were left out is the
// admission's, about where the pod runs, and not in the status, which says what the injector
// did with what the pod asked for.
func TestInjectForLabelsLeftOut(t *testing.T) {
	huge := map[string]string{}
	for i := range 200 {
		huge[fmt.Sprintf("example.com/label-%04d", i)] = strings.Repeat("v", 63)
	}
	w := Workload{Owners: deploymentWorkload.Owners, NamespaceLabels: huge}
	want, _, err := Inject(basePod(tailApp()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetWorkload(want, w); err == nil {
		t.Fatal("SetWorkload took the labels: the test shows nothing")
	}
	got, o, err := InjectFor(basePod(tailApp()), nil, nil, w)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("InjectFor differs from Inject and SetWorkload (-want +got):\n%s", diff)
	}
	if !slices.ContainsFunc(o.Warnings, func(w string) bool { return strings.Contains(w, "records go without them") }) {
		t.Errorf("warnings %q, want one saying the labels were left out", o.Warnings)
	}
}
