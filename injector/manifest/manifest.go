// Package manifest applies the injector to Kubernetes manifests, as `sidelog inject` does:
// manifests in, the same documents out, in the same order and the same format, with the agent
// added to every pod template that asks for it.
//
// The input may be multi-document YAML, JSON, a stream of JSON values (what `jq -c` prints and
// `kubectl apply` reads), or a mix of them separated by "---" lines; a List's items are
// handled one by one. A document is changed only by what the injector changed in its pod
// template: the difference between the typed template before and after injection is applied
// to the document's YAML node tree, so comments, key order, quoting and fields this program
// does not know survive. Documents that are left alone are written back byte for byte; a
// changed JSON document stays JSON, on one line if it was on one.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sidelog/sidelog/injector"
	"github.com/sidelog/sidelog/sidecar/config"
)

// Options say how to inject.
type Options struct {
	// Policy is the cluster policy; nil is injector.DefaultPolicy.
	Policy *injector.Policy
	// Filename names the input in messages ("deploy.yaml:12: ..."); empty, they say "line 12".
	Filename string
	// Namespaces are the Namespaces the objects go to, as ReadNamespaces reads them: their
	// sidelog.io/ annotations are the namespace defaults. A Namespace document of the input
	// takes precedence over one of the same name here. When there is exactly one, it is also
	// the namespace of the objects that name none (as `kubectl apply -n` would make it).
	Namespaces []Namespace
}

// Namespace is a Namespace object: its name and sidelog annotations.
type Namespace struct {
	Name        string
	Annotations map[string]string
	// where says where each annotation was written, for messages.
	where map[string]string
}

// Document identifies an object of the input, for messages.
type Document struct {
	// Index counts the documents (YAML documents, JSON values) of the input from 1.
	Index int
	// Item counts the items of a List from 1; 0 for an object that is not a List's item.
	Item int
	// Kind, Namespace and Name are the object's.
	Kind, Namespace, Name string
}

func (d Document) String() string {
	s := fmt.Sprintf("document %d", d.Index)
	if d.Item > 0 {
		s += fmt.Sprintf(", item %d", d.Item)
	}
	switch {
	case d.Kind == "":
		return s
	case d.Namespace != "":
		return fmt.Sprintf("%s (%s %s/%s)", s, d.Kind, d.Namespace, d.Name)
	default:
		return fmt.Sprintf("%s (%s %s)", s, d.Kind, d.Name)
	}
}

// Warning is something the user should know about one object: what the injector decided on
// its own, or what this program did not do. A Note is for information only.
type Warning struct {
	// Where is the file and line ("deploy.yaml:12", or "line 12").
	Where    string
	Document Document
	Note     bool
	Message  string
}

func (w Warning) String() string { return w.Where + ": " + w.Document.String() + ": " + w.Message }

// templatePaths says where each kind keeps its pod template; an empty path is the object
// itself (a Pod). extensions/v1beta1 is there for old manifests. Other kinds whose
// spec.template is a pod template (Argo Rollouts, OpenKruise CloneSets, ...) are injected too,
// with a note.
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

// guessedPaths are where other kinds are looked at for a pod template.
var guessedPaths = [][]string{{"spec", "template"}, {"spec", "jobTemplate", "spec", "template"}}

// Inject reads the manifests of r, adds the agent to each pod template that asks for it and
// writes all the documents to w. Pods of Jobs and CronJobs are injected as pods owned by a
// Job, so legacy mode is refused for them.
//
// Every document is processed before anything is written; if any of them has a mistake,
// nothing is written and the error (every mistake of every document, joined) gives for each
// its line, the document and the annotation, so that a pipeline into kubectl apply applies
// nothing rather than half. Empty input is an error.
func Inject(w io.Writer, r io.Reader, opts Options) ([]Warning, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading the manifests: %w", err)
	}
	rn := &run{opts: opts, namespaces: map[string]*Namespace{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New(rn.named("no manifests in the input: it is empty"))
	}
	chunks, err := readInput(data, rn.where)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(chunks, func(c *chunk) bool {
		return slices.ContainsFunc(c.docs, func(d *doc) bool { v := d.value(); return v != nil && v.ShortTag() != "!!null" })
	}) {
		return nil, errors.New(rn.named("no manifests in the input: only comments and separators"))
	}
	for i := range opts.Namespaces {
		rn.namespaces[opts.Namespaces[i].Name] = &opts.Namespaces[i]
	}
	if len(opts.Namespaces) == 1 {
		rn.defaultNamespace = opts.Namespaces[0].Name
	}
	for _, c := range chunks {
		for _, d := range c.docs {
			rn.collectNamespaces(d, d.value())
		}
	}
	for _, c := range chunks {
		for _, d := range c.docs {
			if v := d.value(); v != nil && v.Kind == yaml.MappingNode {
				rn.object(d, 0, v)
			}
		}
	}
	if len(rn.errs) > 0 {
		return rn.warnings, errors.Join(rn.errs...)
	}
	out, err := write(chunks)
	if err != nil {
		return rn.warnings, err
	}
	if _, err := w.Write(out); err != nil {
		return rn.warnings, fmt.Errorf("writing the manifests: %w", err)
	}
	return rn.warnings, nil
}

// ReadNamespaces reads the Namespace objects of a manifest (what --namespace FILE names), for
// Options.Namespaces. Any other kind is an error.
func ReadNamespaces(r io.Reader, filename string) ([]Namespace, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	rn := &run{opts: Options{Filename: filename}, namespaces: map[string]*Namespace{}}
	chunks, err := readInput(data, rn.where)
	if err != nil {
		return nil, err
	}
	var nss []Namespace
	for _, c := range chunks {
		for _, d := range c.docs {
			v := d.value()
			if v == nil || v.Kind != yaml.MappingNode || groupKind(v) != (schema.GroupKind{Kind: "Namespace"}) {
				return nil, fmt.Errorf("%s: document %d: want a Namespace (apiVersion: v1, kind: Namespace)", rn.where(d.line), d.index)
			}
			rn.collectNamespaces(d, v)
			if len(rn.errs) > 0 {
				return nil, errors.Join(rn.errs...)
			}
			name := scalar(v, "metadata", "name")
			nss = append(nss, *rn.namespaces[name])
		}
	}
	if len(nss) == 0 {
		return nil, errors.New(rn.named("no Namespace in it"))
	}
	return nss, nil
}

// run is one call of Inject.
type run struct {
	opts             Options
	namespaces       map[string]*Namespace
	defaultNamespace string
	warnings         []Warning
	errs             []error
}

func (rn *run) where(line int) string {
	if rn.opts.Filename == "" {
		return fmt.Sprintf("line %d", line)
	}
	return fmt.Sprintf("%s:%d", rn.opts.Filename, line)
}

func (rn *run) named(msg string) string {
	if rn.opts.Filename == "" {
		return msg
	}
	return rn.opts.Filename + ": " + msg
}

func (rn *run) errorf(line int, doc Document, format string, args ...any) {
	rn.errs = append(rn.errs, fmt.Errorf("%s: %s: %s", rn.where(line), doc, fmt.Sprintf(format, args...)))
}

func (rn *run) warnf(line int, doc Document, format string, args ...any) {
	rn.warnings = append(rn.warnings, Warning{Where: rn.where(line), Document: doc, Message: fmt.Sprintf(format, args...)})
}

func (rn *run) notef(line int, doc Document, format string, args ...any) {
	rn.warnings = append(rn.warnings, Warning{Where: rn.where(line), Document: doc, Note: true, Message: fmt.Sprintf(format, args...)})
}

// collectNamespaces records the Namespaces of a document (or of the items of a List).
func (rn *run) collectNamespaces(d *doc, obj *yaml.Node) {
	if obj == nil || obj.Kind != yaml.MappingNode {
		return
	}
	if items := lookup(obj, "items"); isList(obj) && items != nil {
		for _, it := range items.Content {
			rn.collectNamespaces(d, it)
		}
		return
	}
	if groupKind(obj) != (schema.GroupKind{Kind: "Namespace"}) {
		return
	}
	name := scalar(obj, "metadata", "name")
	ns := &Namespace{Name: name, Annotations: map[string]string{}, where: map[string]string{}}
	if ann := lookup(obj, "metadata", "annotations"); ann != nil && ann.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(ann.Content); i += 2 {
			k, v := ann.Content[i], ann.Content[i+1]
			if !strings.HasPrefix(k.Value, injector.Prefix) {
				continue
			}
			if msg := notString(k.Value, v, d.format); msg != "" {
				rn.errorf(k.Line, document(d.index, 0, obj), "%s", msg)
				continue
			}
			ns.Annotations[k.Value] = v.Value
			ns.where[k.Value] = rn.where(k.Line)
		}
	}
	rn.namespaces[name] = ns
}

// object handles one object: a List's items, or a pod template.
func (rn *run) object(d *doc, item int, obj *yaml.Node) {
	if items := lookup(obj, "items"); isList(obj) && items != nil && items.Kind == yaml.SequenceNode {
		for i, it := range items.Content {
			if it.Kind == yaml.MappingNode {
				rn.object(d, i+1, it)
			}
		}
		return
	}
	id := document(d.index, item, obj)
	gk := groupKind(obj)
	if gk == (schema.GroupKind{Kind: "Namespace"}) {
		return // read by collectNamespaces
	}

	path, known := templatePaths[gk]
	var tmpl *yaml.Node
	if known {
		tmpl = lookup(obj, path...)
		if tmpl != nil && tmpl.Kind != yaml.MappingNode {
			tmpl = nil
		}
	} else {
		for _, p := range guessedPaths {
			if t := lookup(obj, p...); isPodTemplate(t) {
				path, tmpl = p, t
				break
			}
		}
	}
	if tmpl == nil {
		keys := sidelogKeys(lookup(obj, "metadata", "annotations"))
		if ref := lookup(obj, "spec", "workloadRef"); len(keys) > 0 && ref != nil {
			// An Argo Rollout that takes its pods from another workload's template.
			rn.warnf(keys[0].Line, id, "%s: on the %s's own metadata, where sidelog does not look; its pods come from the template of %s %s (spec.workloadRef): put %s on that template's metadata.annotations",
				joinKeys(keys), id.Kind, scalar(ref, "kind"), scalar(ref, "name"), itOrThem(keys))
			return
		}
		if len(keys) > 0 {
			rn.warnf(keys[0].Line, id, "%s: sidelog reads its annotations on pods, pod templates and namespaces; on a %s they do nothing", joinKeys(keys), orKind(gk.Kind))
		}
		return
	}
	rn.misplaced(id, obj, path)

	tmplAnn := lookup(tmpl, "metadata", "annotations")
	asks := len(sidelogKeys(tmplAnn)) > 0
	if !asks {
		return
	}
	before, ok := rn.decodeTemplate(id, d, tmpl)
	if before == nil {
		return
	}
	nsName := id.Namespace
	if nsName == "" {
		nsName = rn.defaultNamespace
	}
	ns := rn.namespaces[nsName]
	var nsAnn map[string]string
	if ns != nil {
		nsAnn = ns.Annotations
	}
	policy := rn.opts.Policy
	isKnative := gk.Group == "serving.knative.dev" && (gk.Kind == "Service" || gk.Kind == "Configuration")
	if isKnative {
		rn.knative(id, tmpl, *before, nsAnn, ns, nsName)
		return
	}
	if !known {
		rn.notef(tmpl.Line, id, "kind %s is not one sidelog knows; its %s is a pod template and was injected as one, as the webhook will inject the pods made from it: check that its controller makes pods from it unchanged",
			kindName(gk), strings.Join(path, "."))
	}

	pod := &corev1.Pod{ObjectMeta: *before.ObjectMeta.DeepCopy(), Spec: *before.Spec.DeepCopy()}
	claims := claimVolumes(obj)
	pod.Spec.Volumes = append(pod.Spec.Volumes, claims...)
	if gk.Group == "batch" {
		// The Job controller will own the pods; the injector refuses legacy mode for them.
		pod.OwnerReferences = append(pod.OwnerReferences, metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: id.Name})
	}
	out, o, err := injector.Inject(pod, nsAnn, policy)
	if err != nil {
		rn.injectErrors(id, tmpl, err, ns, nsName)
		return
	}
	if !ok {
		return // a mistake is already reported; nothing is written
	}
	for _, w := range o.Warnings {
		rn.warnf(tmpl.Line, id, "%s", w)
	}
	owned := false
	if o.Injected {
		// The workload it injects is all sidelog inject knows of the pods' owners; the webhook
		// adds the rest (a Deployment's ReplicaSet) and the namespace's labels at admission.
		if owned, err = injector.SetWorkload(out, injector.Workload{Owners: workloadOf(gk, id, pod)}); err != nil {
			rn.errorf(tmpl.Line, id, "%v", err)
			return
		}
	}
	switch {
	case o.Reason == "already injected" && !owned:
		return // injected from the same inputs: nothing to change
	case strings.HasPrefix(o.Reason, "namespace annotation") && !o.Changed:
		rn.notef(tmpl.Line, id, "not injected: namespace %s opts its pods out (%s at %s)", nsName, `sidelog.io/inject: "false"`, ns.where[injector.AnnotationInject])
		return
	case !o.Changed && !owned:
		return
	}
	// An agent injected from other inputs is replaced, as the webhook replaces it in the pods:
	// say what about it changed, which the injector's warning does not.
	if old, now := agentOf(pod), agentOf(out); o.Changed && old != nil && now != nil {
		if diff := agentDiff(old, now); len(diff) > 0 {
			rn.notef(keyLine(tmpl, injector.AnnotationStatus), id, "injected anew: %s changed", strings.Join(diff, ", "))
		}
	}

	after := corev1.PodTemplateSpec{ObjectMeta: out.ObjectMeta, Spec: out.Spec}
	after.OwnerReferences = before.OwnerReferences
	after.Spec.Volumes = slices.DeleteFunc(after.Spec.Volumes, func(v corev1.Volume) bool {
		return slices.ContainsFunc(claims, func(c corev1.Volume) bool { return c.Name == v.Name })
	})
	if err := rn.patch(tmpl, before, &after); err != nil {
		rn.errorf(tmpl.Line, id, "%v", err)
		return
	}
	d.changed = true
}

// workloadOf is the owner that the pods made from the template of object id (of kind gk) will
// have as their workload: the object itself, or for a Pod its own controller, if it names one.
// Nil (not known) for a PodTemplate or an object without a name.
func workloadOf(gk schema.GroupKind, id Document, pod *corev1.Pod) []config.Owner {
	switch {
	case gk == schema.GroupKind{Kind: "Pod"}:
		if ref := metav1.GetControllerOf(pod); ref != nil {
			return []config.Owner{{Kind: ref.Kind, Name: ref.Name}}
		}
		return []config.Owner{}
	case gk == schema.GroupKind{Kind: "PodTemplate"} || id.Name == "":
		return nil
	}
	return []config.Owner{{Kind: gk.Kind, Name: id.Name}}
}

// patch applies the injector's changes to the template's node tree, and checks that the
// result reads back as the injector's template.
func (rn *run) patch(tmpl *yaml.Node, before, after *corev1.PodTemplateSpec) error {
	a, err := json.Marshal(before)
	if err != nil {
		return err
	}
	b, err := json.Marshal(after)
	if err != nil {
		return err
	}
	if err := patchTree(tmpl, a, b); err != nil {
		return err
	}
	var m any
	if err := tmpl.Decode(&m); err != nil {
		return fmt.Errorf("reading the patched template: %w", err)
	}
	js, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("reading the patched template: %w", err)
	}
	var got corev1.PodTemplateSpec
	if err := json.Unmarshal(js, &got); err != nil {
		return fmt.Errorf("reading the patched template: %w", err)
	}
	if !equality.Semantic.DeepEqual(&got, after) {
		return errors.New("the patched template differs from the injector's (a bug in sidelog; please report it)")
	}
	return nil
}

// decodeTemplate reads a pod template as the API server would, after checking that its
// annotations are strings: a YAML boolean or number there is a mistake of its own, named.
//
// It returns nil if it cannot read the template, and ok false if an annotation is not a
// string (then reported, and read as a string so that the injector can find other mistakes).
func (rn *run) decodeTemplate(id Document, d *doc, tmpl *yaml.Node) (t *corev1.PodTemplateSpec, ok bool) {
	t = &corev1.PodTemplateSpec{}
	ok = true
	ann := lookup(tmpl, "metadata", "annotations")
	coerced := map[string]string{}
	if ann != nil && ann.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(ann.Content); i += 2 {
			k, v := ann.Content[i], ann.Content[i+1]
			if msg := notString(k.Value, v, d.format); msg != "" {
				rn.errorf(k.Line, id, "%s", msg)
				ok = false
				coerced[k.Value] = v.Value
			}
		}
	}
	var m map[string]any
	if err := tmpl.Decode(&m); err != nil {
		rn.errorf(tmpl.Line, id, "reading the pod template: %v", err)
		return nil, false
	}
	if meta, _ := m["metadata"].(map[string]any); meta != nil {
		if a, _ := meta["annotations"].(map[string]any); a != nil {
			for k, v := range coerced {
				a[k] = v
			}
		}
	}
	js, err := json.Marshal(m)
	if err == nil {
		err = json.Unmarshal(js, t)
	}
	if err != nil {
		rn.errorf(tmpl.Line, id, "reading the pod template: %v", err)
		return nil, false
	}
	return t, ok
}

// notString says what is wrong with an annotation whose value is not a YAML or JSON string.
func notString(key string, v *yaml.Node, f format) string {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		return ""
	}
	what := "not a string"
	switch {
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool":
		what = "a boolean"
	case v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!int" || v.ShortTag() == "!!float"):
		what = "a number"
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null":
		what = "null"
	case v.Kind == yaml.ScalarNode:
		what = "a " + strings.TrimPrefix(v.ShortTag(), "!!")
	}
	if v.Kind != yaml.ScalarNode {
		return fmt.Sprintf("%s: the value is a YAML %s; annotation values are strings", key, map[yaml.Kind]string{yaml.MappingNode: "mapping", yaml.SequenceNode: "list", yaml.AliasNode: "alias"}[v.Kind])
	}
	if f == formatJSON {
		return fmt.Sprintf("%s: the value %s is %s; annotation values are strings: quote it, \"%s\": \"%s\"", key, v.Value, what, key, v.Value)
	}
	return fmt.Sprintf("%s: the value %s is %s in YAML; annotation values are strings: quote it, %s: \"%s\"", key, v.Value, what, key, v.Value)
}

// injectErrors reports each mistake the injector found, at the line of its annotation.
func (rn *run) injectErrors(id Document, tmpl *yaml.Node, err error, ns *Namespace, nsName string) {
	for _, e := range flatten(err) {
		var ue *injector.Error
		line := tmpl.Line
		msg := e.Error()
		if errors.As(e, &ue) && ue.Key != "" {
			switch ue.Origin {
			case injector.FromPod:
				line = keyLine(tmpl, ue.Key)
			case injector.FromNamespace:
				if ns != nil && ns.where[ue.Key] != "" {
					msg = fmt.Sprintf("%s (at %s)", msg, ns.where[ue.Key])
				}
			}
		}
		if ue != nil && ue.Origin == injector.FromPod && strings.Contains(ue.Message, "namespace") && ns == nil {
			msg += namespaceHint(nsName)
		}
		rn.errorf(line, id, "%s", msg)
	}
}

// namespaceHint says how sidelog inject learns a namespace's defaults, for a message telling
// the user to set something there.
func namespaceHint(name string) string {
	if name == "" {
		return " (the object names no namespace; sidelog inject takes namespace annotations from --namespace FILE, a Namespace manifest)"
	}
	return fmt.Sprintf(" (sidelog inject takes the annotations of namespace %s from a Namespace document in the input or from --namespace FILE, and has neither)", name)
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// misplaced warns of sidelog annotations on the object around a pod template, where neither
// the webhook nor this program looks, and of sidelog keys among the template's labels.
func (rn *run) misplaced(id Document, obj *yaml.Node, path []string) {
	tmplPath := strings.Join(append(slices.Clone(path), "metadata", "annotations"), ".")
	if len(path) > 0 {
		if keys := sidelogKeys(lookup(obj, "metadata", "annotations")); len(keys) > 0 {
			rn.warnf(keys[0].Line, id, "%s: on the %s's own metadata, where sidelog does not look; sidelog reads the annotations of the pods: move %s to %s",
				joinKeys(keys), id.Kind, itOrThem(keys), tmplPath)
		}
	}
	// A CronJob's jobTemplate has metadata of its own.
	for i := 2; i < len(path); i += 2 {
		if keys := sidelogKeys(lookup(obj, append(slices.Clone(path[:i]), "metadata", "annotations")...)); len(keys) > 0 {
			rn.warnf(keys[0].Line, id, "%s: on %s.metadata, where sidelog does not look; sidelog reads the annotations of the pods: move %s to %s",
				joinKeys(keys), strings.Join(path[:i], "."), itOrThem(keys), tmplPath)
		}
	}
	labelsPath := append(slices.Clone(path), "metadata", "labels")
	for _, k := range sidelogKeys(lookup(obj, labelsPath...)) {
		if k.Value == injector.AnnotationStatus || k.Value == injector.Prefix+"injected" {
			continue
		}
		rn.warnf(k.Line, id, "%s is a label; sidelog reads annotations: move it to %s", k.Value, tmplPath)
	}
}

func itOrThem(keys []*yaml.Node) string {
	if len(keys) == 1 {
		return "it"
	}
	return "them"
}

func joinKeys(keys []*yaml.Node) string {
	var s []string
	for _, k := range keys {
		s = append(s, k.Value)
	}
	return strings.Join(s, ", ")
}

// sidelogKeys returns the keys of a mapping that start with sidelog.io/.
func sidelogKeys(m *yaml.Node) []*yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	var keys []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if strings.HasPrefix(m.Content[i].Value, injector.Prefix) {
			keys = append(keys, m.Content[i])
		}
	}
	return keys
}

// keyLine is the line of an annotation of the template, or of the template.
func keyLine(tmpl *yaml.Node, key string) int {
	if ann := lookup(tmpl, "metadata", "annotations"); ann != nil && ann.Kind == yaml.MappingNode {
		if i := keyIndex(ann, key); i >= 0 {
			return ann.Content[i].Line
		}
		return ann.Line
	}
	return tmpl.Line
}

// claimVolumes are the volumes that a StatefulSet's controller (or OpenKruise's, for its
// CloneSets and Advanced StatefulSets) adds to its pods, one for each of its
// volumeClaimTemplates: the template mounts them without declaring them.
func claimVolumes(obj *yaml.Node) []corev1.Volume {
	claims := lookup(obj, "spec", "volumeClaimTemplates")
	if claims == nil || claims.Kind != yaml.SequenceNode {
		return nil
	}
	var vols []corev1.Volume
	for _, c := range claims.Content {
		if name := scalar(c, "metadata", "name"); name != "" {
			vols = append(vols, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name},
			}})
		}
	}
	return vols
}

func hasAgent(spec *corev1.PodSpec) bool {
	named := func(c corev1.Container) bool { return c.Name == injector.AgentContainer }
	return slices.ContainsFunc(spec.InitContainers, named) || slices.ContainsFunc(spec.Containers, named)
}

// lookup follows keys down mappings; nil if one is missing.
func lookup(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		i := keyIndex(n, k)
		if i < 0 {
			return nil
		}
		n = n.Content[i+1]
	}
	return n
}

func scalar(n *yaml.Node, keys ...string) string {
	if v := lookup(n, keys...); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// isList reports whether obj is a List (kind List, or any kind ending in List, as kubectl
// get prints them).
func isList(obj *yaml.Node) bool {
	return strings.HasSuffix(scalar(obj, "kind"), "List") && lookup(obj, "items") != nil
}

// isPodTemplate reports whether n looks like a pod template: a spec with a list of containers.
func isPodTemplate(n *yaml.Node) bool {
	c := lookup(n, "spec", "containers")
	return c != nil && c.Kind == yaml.SequenceNode
}

func groupKind(obj *yaml.Node) schema.GroupKind {
	group, _, found := strings.Cut(scalar(obj, "apiVersion"), "/")
	if !found {
		group = "" // "v1" is the core group
	}
	return schema.GroupKind{Group: group, Kind: scalar(obj, "kind")}
}

func kindName(gk schema.GroupKind) string {
	if gk.Group == "" {
		return gk.Kind
	}
	return gk.Kind + "." + gk.Group
}

func orKind(kind string) string {
	if kind == "" {
		return "object without a kind"
	}
	return kind
}

func document(index, item int, obj *yaml.Node) Document {
	return Document{Index: index, Item: item, Kind: scalar(obj, "kind"), Namespace: scalar(obj, "metadata", "namespace"), Name: scalar(obj, "metadata", "name")}
}
