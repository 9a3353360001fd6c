// Package manifest applies the injector to Kubernetes manifests, as `sidelog inject` does:
// multi-document YAML in, the same documents out, with the agent added to every pod template
// that asks for it.
//
// A document is changed only by what the injector changed in its pod template: the difference
// between the template before and after injection is applied as a JSON patch to the document as
// it was read, so fields this program does not know survive. Documents that are left alone
// (other kinds, templates that ask for nothing, templates already injected, comments) are
// written back byte for byte; changed ones are re-encoded, which sorts their keys and drops
// the comments inside them (those above them stay).
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sidelog/sidelog/injector"
)

// Document identifies an object of the input, for messages.
type Document struct {
	// Index counts the YAML documents of the input from 1.
	Index int
	// Kind, Namespace and Name are the object's; for an item of a List, the item's.
	Kind, Namespace, Name string
}

func (d Document) String() string {
	switch {
	case d.Kind == "":
		return fmt.Sprintf("document %d", d.Index)
	case d.Namespace != "":
		return fmt.Sprintf("document %d (%s %s/%s)", d.Index, d.Kind, d.Namespace, d.Name)
	default:
		return fmt.Sprintf("document %d (%s %s)", d.Index, d.Kind, d.Name)
	}
}

// Warning is what the injector decided on its own about one object.
type Warning struct {
	Document Document
	Message  string
}

func (w Warning) String() string { return w.Document.String() + ": " + w.Message }

// templatePaths says where each kind keeps its pod template; an empty path is the object
// itself (a Pod). extensions/v1beta1 is there for old manifests.
var templatePaths = map[schema.GroupKind][]string{
	{Kind: "Pod"}:                             nil,
	{Kind: "PodTemplate"}:                     {"template"},
	{Kind: "ReplicationController"}:           {"spec", "template"},
	{Group: "apps", Kind: "Deployment"}:       {"spec", "template"},
	{Group: "apps", Kind: "StatefulSet"}:      {"spec", "template"},
	{Group: "apps", Kind: "DaemonSet"}:        {"spec", "template"},
	{Group: "apps", Kind: "ReplicaSet"}:       {"spec", "template"},
	{Group: "extensions", Kind: "Deployment"}: {"spec", "template"},
	{Group: "extensions", Kind: "DaemonSet"}:  {"spec", "template"},
	{Group: "extensions", Kind: "ReplicaSet"}: {"spec", "template"},
	{Group: "batch", Kind: "Job"}:             {"spec", "template"},
	{Group: "batch", Kind: "CronJob"}:         {"spec", "jobTemplate", "spec", "template"},
}

// Inject reads every YAML document of r, adds the agent to each pod template that asks for it
// (policy nil is injector.DefaultPolicy; there are no namespace defaults offline) and writes
// all the documents to w, separated by "---". Pods of Jobs and CronJobs are injected as pods
// owned by a Job, so legacy mode is refused for them.
//
// Every document is processed before anything is written; if any of them is refused, nothing
// is written and the error (all of them, joined) names each document by index, kind and name,
// so that a pipeline into kubectl apply applies nothing rather than half.
func Inject(w io.Writer, r io.Reader, policy *injector.Policy) ([]Warning, error) {
	docs, err := split(r)
	if err != nil {
		return nil, err
	}
	var (
		out      bytes.Buffer
		warnings []Warning
		errs     []error
	)
	for i, raw := range docs {
		doc, ws, err := injectDocument(i+1, raw, policy)
		warnings = append(warnings, ws...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(doc)
		if len(doc) > 0 && doc[len(doc)-1] != '\n' {
			out.WriteByte('\n')
		}
	}
	if len(errs) > 0 {
		return warnings, errors.Join(errs...)
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return warnings, fmt.Errorf("writing the manifests: %w", err)
	}
	return warnings, nil
}

// split reads the YAML documents of r as they are written.
func split(r io.Reader) ([][]byte, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := yr.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		docs = append(docs, doc)
	}
}

// injectDocument returns the document to write in place of raw.
func injectDocument(index int, raw []byte, policy *injector.Policy) ([]byte, []Warning, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("document %d: parsing YAML: %w", index, err)
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber() // numbers are written back as they were read, not as float64
	if err := dec.Decode(&obj); err != nil || obj == nil {
		// Not an object (comments only, a list, a scalar): not ours to judge.
		return raw, nil, nil
	}
	changed, warnings, err := injectObject(index, obj, policy)
	if err != nil || !changed {
		return raw, warnings, err
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		return nil, warnings, fmt.Errorf("%s: encoding YAML: %w", describe(index, obj), err)
	}
	return append(leadingComments(raw), y...), warnings, nil
}

// leadingComments returns the comment and blank lines that open a document: re-encoding loses
// the comments inside it, but keeps the ones that say what it is.
func leadingComments(raw []byte) []byte {
	n := 0
	for n < len(raw) {
		end := bytes.IndexByte(raw[n:], '\n')
		if end < 0 {
			break
		}
		line := bytes.TrimSpace(raw[n : n+end])
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			break
		}
		n += end + 1
	}
	return bytes.Clone(raw[:n])
}

// injectObject injects the pod template of obj, or of each item of a List, in place.
func injectObject(index int, obj map[string]any, policy *injector.Policy) (bool, []Warning, error) {
	gk := groupKind(obj)
	if gk == (schema.GroupKind{Kind: "List"}) {
		items, _ := obj["items"].([]any)
		var (
			changed  bool
			warnings []Warning
			errs     []error
		)
		for _, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				continue
			}
			c, ws, err := injectObject(index, m, policy)
			changed = changed || c
			warnings = append(warnings, ws...)
			if err != nil {
				errs = append(errs, err)
			}
		}
		return changed, warnings, errors.Join(errs...)
	}
	path, ok := templatePaths[gk]
	if !ok {
		return false, nil, nil
	}
	tmpl := obj
	for _, k := range path {
		if tmpl, ok = tmpl[k].(map[string]any); !ok {
			return false, nil, nil
		}
	}
	doc := document(index, obj)
	patched, warnings, err := injectTemplate(doc, tmpl, gk.Group == "batch", claimVolumes(gk, obj), policy)
	if err != nil || patched == nil {
		return false, warnings, err
	}
	if len(path) == 0 {
		for k := range obj {
			delete(obj, k)
		}
		for k, v := range patched {
			obj[k] = v
		}
		return true, warnings, nil
	}
	parent := obj
	for _, k := range path[:len(path)-1] {
		parent = parent[k].(map[string]any)
	}
	parent[path[len(path)-1]] = patched
	return true, warnings, nil
}

// claimVolumes are the volumes that a StatefulSet's controller adds to its pods, one for each
// of its volumeClaimTemplates: the template mounts them without declaring them.
func claimVolumes(gk schema.GroupKind, obj map[string]any) []corev1.Volume {
	if gk != (schema.GroupKind{Group: "apps", Kind: "StatefulSet"}) {
		return nil
	}
	spec, _ := obj["spec"].(map[string]any)
	claims, _ := spec["volumeClaimTemplates"].([]any)
	var vols []corev1.Volume
	for _, c := range claims {
		meta, _ := c.(map[string]any)["metadata"].(map[string]any)
		if name, _ := meta["name"].(string); name != "" {
			vols = append(vols, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name},
			}})
		}
	}
	return vols
}

// injectTemplate injects one pod template (metadata and spec; for a Pod, the whole object) and
// returns it patched, or nil if the injector changed nothing. claims are volumes the pods will
// have that the template does not declare.
func injectTemplate(doc Document, tmpl map[string]any, jobOwned bool, claims []corev1.Volume, policy *injector.Policy) (map[string]any, []Warning, error) {
	orig, err := json.Marshal(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", doc, err)
	}
	var before corev1.PodTemplateSpec
	if err := json.Unmarshal(orig, &before); err != nil {
		return nil, nil, fmt.Errorf("%s: reading the pod template: %w", doc, err)
	}
	pod := &corev1.Pod{ObjectMeta: *before.ObjectMeta.DeepCopy(), Spec: *before.Spec.DeepCopy()}
	pod.Spec.Volumes = append(pod.Spec.Volumes, claims...)
	if jobOwned {
		// The Job controller will own the pods; the injector refuses legacy mode for them.
		pod.OwnerReferences = append(pod.OwnerReferences, metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: doc.Name})
	}
	out, o, err := injector.Inject(pod, nil, policy)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", doc, err)
	}
	var warnings []Warning
	for _, w := range o.Warnings {
		warnings = append(warnings, Warning{Document: doc, Message: w})
	}
	if !o.Injected || o.Reason != "" {
		return nil, warnings, nil
	}
	after := corev1.PodTemplateSpec{ObjectMeta: out.ObjectMeta, Spec: out.Spec}
	after.OwnerReferences = before.OwnerReferences
	after.Spec.Volumes = slices.DeleteFunc(after.Spec.Volumes, func(v corev1.Volume) bool {
		return slices.ContainsFunc(claims, func(c corev1.Volume) bool { return c.Name == v.Name })
	})

	patched, err := applyDiff(orig, &before, &after)
	if err != nil {
		return nil, warnings, fmt.Errorf("%s: %w", doc, err)
	}
	return patched, warnings, nil
}

// applyDiff applies to orig the JSON patch that turns before into after, and checks that the
// result reads back as after.
func applyDiff(orig []byte, before, after *corev1.PodTemplateSpec) (map[string]any, error) {
	a, err := json.Marshal(before)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(after)
	if err != nil {
		return nil, err
	}
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, fmt.Errorf("computing the patch: %w", err)
	}
	p, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatchapply.DecodePatch(p)
	if err != nil {
		return nil, fmt.Errorf("decoding the patch: %w", err)
	}
	res, err := patch.Apply(orig)
	if err != nil {
		return nil, fmt.Errorf("applying the patch: %w", err)
	}
	var got corev1.PodTemplateSpec
	if err := json.Unmarshal(res, &got); err != nil {
		return nil, fmt.Errorf("reading the patched template: %w", err)
	}
	if !equality.Semantic.DeepEqual(&got, after) {
		return nil, errors.New("the patched template differs from the injector's (a bug in sidelog; please report it)")
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(res))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func groupKind(obj map[string]any) schema.GroupKind {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		group = "" // "v1" is the core group
	}
	return schema.GroupKind{Group: group, Kind: kind}
}

func document(index int, obj map[string]any) Document {
	d := Document{Index: index}
	d.Kind, _ = obj["kind"].(string)
	if meta, ok := obj["metadata"].(map[string]any); ok {
		d.Namespace, _ = meta["namespace"].(string)
		d.Name, _ = meta["name"].(string)
	}
	return d
}

func describe(index int, obj map[string]any) string { return document(index, obj).String() }
