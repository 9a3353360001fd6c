// Package receipts reads the delivery receipts of sidelog agents from pod statuses, as
// `kubectl get -o json` prints pods, and prints them as a table: `sidelog receipt`.
//
// The agent writes its receipt (package sidecar/receipt) to its termination message; the kubelet
// copies it into the agent container's status: initContainerStatuses for a native sidecar,
// containerStatuses for a legacy one, under state.terminated once the agent exited, or
// lastState.terminated for the run before a restart.
package receipts

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/receipt"
)

// Row is one line of the table: an app container's totals, the containers a receipt summed, or a
// pod without a receipt (Receipt nil, Note says why).
type Row struct {
	Pod       string // namespace/name
	Container string
	Counts    receipt.Counts
	Receipt   *receipt.Receipt // nil: no receipt
	Note      string
}

// ReadPods decodes what `kubectl get -o json` prints: a Pod, a List of pods (kubectl get pods,
// kubectl get pods -l batch.kubernetes.io/job-name=NAME), or a stream of either.
func ReadPods(r io.Reader) ([]corev1.Pod, error) {
	dec := json.NewDecoder(r)
	var pods []corev1.Pod
	for n := 1; ; n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			if n == 1 {
				return nil, errors.New("no input: pipe the output of kubectl get pod NAME -o json")
			}
			return pods, nil
		} else if err != nil {
			return nil, fmt.Errorf("document %d: %w (kubectl get -o json output is expected)", n, err)
		}
		got, err := decodePods(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		pods = append(pods, got...)
	}
}

func decodePods(raw json.RawMessage) ([]corev1.Pod, error) {
	var head struct {
		Kind  string                `json:"kind"`
		Meta  struct{ Name string } `json:"metadata"`
		Items []json.RawMessage     `json:"items"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	switch head.Kind {
	case "Pod":
		var p corev1.Pod
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("pod: %w", err)
		}
		return []corev1.Pod{p}, nil
	case "List", "PodList":
		var pods []corev1.Pod
		for i, item := range head.Items {
			got, err := decodePods(item)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			pods = append(pods, got...)
		}
		return pods, nil
	case "Job", "CronJob":
		return nil, fmt.Errorf("a %s has no pod statuses: pipe its pods, kubectl get pods -l batch.kubernetes.io/job-name=%s -o json", head.Kind, head.Meta.Name)
	case "":
		return nil, errors.New("not a Kubernetes object (no kind)")
	default:
		return nil, fmt.Errorf("a %s is not a pod: pipe kubectl get pods -o json", head.Kind)
	}
}

// Rows returns the table's rows of pods, in their order.
func Rows(pods []corev1.Pod) []Row {
	var rows []Row
	for i := range pods {
		rows = append(rows, podRows(&pods[i])...)
	}
	return rows
}

func podRows(pod *corev1.Pod) []Row {
	name := pod.Name
	if pod.Namespace != "" {
		name = pod.Namespace + "/" + name
	}
	none := func(note string) []Row { return []Row{{Pod: name, Note: note}} }
	if !hasAgent(pod) {
		return none("no receipt: no " + injector.AgentContainer + " container (not injected)")
	}
	st := agentStatus(pod)
	if st == nil {
		return none("no receipt yet: the agent has not started")
	}
	term, note := st.State.Terminated, ""
	if term == nil {
		state := "running"
		if w := st.State.Waiting; w != nil {
			state = "waiting (" + w.Reason + ")"
		}
		if term = st.LastTerminationState.Terminated; term == nil {
			return none("no receipt yet: the agent is " + state)
		}
		note = "the run before the agent restarted; it is " + state + " now"
	}
	if term.Message == "" {
		return none(fmt.Sprintf("no receipt: the agent exited (%s, code %d) without writing one", cmp.Or(term.Reason, "no reason"), term.ExitCode))
	}
	r, err := receipt.Parse(term.Message)
	if errors.Is(err, receipt.ErrNotReceipt) {
		first, _, _ := strings.Cut(strings.TrimSpace(term.Message), "\n")
		return none(fmt.Sprintf("no receipt: the agent exited (code %d) and its message is not one: %.80s", term.ExitCode, first))
	} else if err != nil {
		return none("no receipt: " + err.Error())
	}
	var notes []string
	if note != "" {
		notes = append(notes, note)
	}
	if r.Error != "" {
		notes = append(notes, "error: "+r.Error)
	}
	switch r.Degraded {
	case receipt.DegradedReasons:
		notes = append(notes, "drop reasons left out to fit the status")
	case receipt.DegradedContainers, receipt.DegradedAll:
		notes = append(notes, "containers summed to fit the status")
	}
	var rows []Row
	for _, c := range r.Containers {
		rows = append(rows, Row{Pod: name, Container: c.Name, Counts: c.Counts, Receipt: &r})
	}
	if o := r.Others; o != nil {
		rows = append(rows, Row{Pod: name, Container: fmt.Sprintf("(%d more)", o.Containers), Counts: o.Counts, Receipt: &r})
	}
	if len(rows) == 0 {
		rows = []Row{{Pod: name, Container: "-", Receipt: &r}}
	}
	rows[0].Note = strings.Join(notes, "; ")
	return rows
}

func hasAgent(pod *corev1.Pod) bool {
	is := func(c corev1.Container) bool { return c.Name == injector.AgentContainer }
	return slices.ContainsFunc(pod.Spec.InitContainers, is) || slices.ContainsFunc(pod.Spec.Containers, is)
}

// agentStatus is the agent's status: an init container's for a native sidecar, a container's for
// a legacy one.
func agentStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == injector.AgentContainer {
				return &list[i]
			}
		}
	}
	return nil
}

// Write prints rows as a table. Bytes are plain numbers, so that scripts can read them.
func Write(w io.Writer, rows []Row) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tCONTAINER\tLINES\tBYTES\tPENDING BYTES\tDROPPED\tDRAINED\tNOTE")
	for _, r := range rows {
		if r.Receipt == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\n", r.Pod, r.Note)
			continue
		}
		drained := "no"
		if r.Receipt.Drained {
			drained = "yes"
		}
		lines, byts, pending := strconv.FormatInt(r.Counts.Lines, 10), strconv.FormatInt(r.Counts.Bytes, 10), strconv.FormatInt(r.Counts.PendingBytes, 10)
		if r.Receipt.Degraded == receipt.DegradedAll {
			lines, byts, pending = "?", "?", "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Pod, r.Container, lines, byts, pending, dropped(r), drained, r.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// tabwriter pads the last column too; trailing spaces make golden files fragile.
	var out strings.Builder
	for line := range strings.Lines(buf.String()) {
		out.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// dropped is the count, with its reasons when the receipt kept them: "3 (line_too_long=2,
// deleted_before_read=1)".
func dropped(r Row) string {
	if r.Receipt.Degraded == receipt.DegradedAll {
		return "?"
	}
	s := strconv.FormatInt(r.Counts.Dropped, 10)
	if len(r.Counts.DroppedBy) == 0 {
		return s
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Counts.DroppedBy)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Counts.DroppedBy[k]))
	}
	return s + " (" + strings.Join(parts, ",") + ")"
}
