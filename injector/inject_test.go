package injector

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/sidecar/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/inject")

// goldenCase is an input file of testdata/inject: a pod, its namespace's annotations and,
// optionally, a cluster policy (DefaultPolicy otherwise).
type goldenCase struct {
	Namespace map[string]string `json:"namespace,omitempty"`
	Policy    json.RawMessage   `json:"policy,omitempty"`
	Pod       corev1.Pod        `json:"pod"`
}

// goldenResult is a .golden.yaml file: what Inject returned, with the agent's configuration
// decoded so that a reviewer can read it.
type goldenResult struct {
	Error       string         `json:"error,omitempty"`
	Outcome     *goldenOutcome `json:"outcome,omitempty"`
	AgentConfig *config.Config `json:"agentConfig,omitempty"`
	Pod         *corev1.Pod    `json:"pod,omitempty"`
}

type goldenOutcome struct {
	Injected bool     `json:"injected"`
	Reason   string   `json:"reason,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// loadCase reads one input file.
func loadCase(t *testing.T, file string) (goldenCase, *Policy) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	p := DefaultPolicy()
	if len(c.Policy) > 0 {
		if p, err = ParsePolicy(c.Policy); err != nil {
			t.Fatalf("%s: policy: %v", file, err)
		}
	}
	return c, p
}

func goldenInputs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/inject/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var inputs []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".golden.yaml") {
			inputs = append(inputs, f)
		}
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata/inject")
	}
	return inputs
}

// agentOf returns the agent container of pod, if any.
func agentOf(pod *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == AgentContainer {
				return &cs[i]
			}
		}
	}
	return nil
}

// agentConfigOf decodes the agent's SIDELOG_CONFIG strictly, as the agent does.
func agentConfigOf(t *testing.T, c *corev1.Container) *config.Config {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == config.Env {
			if _, err := config.Parse([]byte(e.Value)); err != nil {
				t.Fatalf("the agent would refuse its config: %v\n%s", err, e.Value)
			}
			// Decode again without defaults: the golden file shows what the injector wrote.
			var raw config.Config
			if err := json.Unmarshal([]byte(e.Value), &raw); err != nil {
				t.Fatal(err)
			}
			return &raw
		}
	}
	t.Fatalf("agent has no %s", config.Env)
	return nil
}

func TestInjectGolden(t *testing.T) {
	for _, file := range goldenInputs(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			c, p := loadCase(t, file)
			before := c.Pod.DeepCopy()
			out, o, err := Inject(&c.Pod, c.Namespace, p)
			if diff := cmp.Diff(before, &c.Pod); diff != "" {
				t.Errorf("Inject modified its input (-before +after):\n%s", diff)
			}

			var res goldenResult
			if err != nil {
				res.Error = err.Error()
			} else {
				res.Outcome = &goldenOutcome{Injected: o.Injected, Reason: o.Reason, Warnings: o.Warnings}
				res.Pod = out
				if a := agentOf(out); a != nil && o.Reason == "" {
					res.AgentConfig = agentConfigOf(t, a)
				}
			}
			got, err := yaml.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", golden, diff)
			}
		})
	}
}

// TestInjectIdempotent injects every golden input twice: the second time must change nothing.
func TestInjectIdempotent(t *testing.T) {
	for _, file := range goldenInputs(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			c, p := loadCase(t, file)
			once, o1, err := Inject(&c.Pod, c.Namespace, p)
			if err != nil {
				t.Skipf("refused: %v", err)
			}
			twice, o2, err := Inject(once, c.Namespace, p)
			if err != nil {
				t.Fatalf("second Inject: %v", err)
			}
			if diff := cmp.Diff(once, twice); diff != "" {
				t.Errorf("second Inject changed the pod (-once +twice):\n%s", diff)
			}
			if o2.Injected != o1.Injected {
				t.Errorf("second Inject: Injected = %v, first said %v", o2.Injected, o1.Injected)
			}
			if o1.Injected && (o2.Reason != "already injected" || len(o2.Warnings) > 0) {
				t.Errorf("second Inject: outcome %+v, want reason \"already injected\" and no warnings", o2)
			}
		})
	}
}

// TestInjectConcurrent injects every golden input from several goroutines at once with the
// same policy, as the webhook does: Inject shares the completed policy between calls, so under
// -race this fails if an injection writes to it; and each must give what one alone gives.
func TestInjectConcurrent(t *testing.T) {
	for _, file := range goldenInputs(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			c, p := loadCase(t, file)
			want, _, wantErr := Inject(&c.Pod, c.Namespace, p)
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					got, _, err := Inject(&c.Pod, c.Namespace, p)
					if (err == nil) != (wantErr == nil) {
						t.Errorf("error %v, alone %v", err, wantErr)
					} else if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("injected concurrently (-alone +concurrently):\n%s", diff)
					}
				})
			}
			wg.Wait()
		})
	}
}
