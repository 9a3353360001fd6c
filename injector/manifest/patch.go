package manifest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"gomodules.xyz/jsonpatch/v2"
)

// The injector works on typed pods; the document is a tree of YAML nodes that keeps comments,
// key order, quoting and the fields this program does not know. What the injector changed is
// computed as a JSON patch between the typed template before and after, and applied to the
// tree, so everything it did not change stays as it was written.

// patchTree applies to tmpl (a mapping node) the patch that turns before into after (JSON of
// the typed template). New objects take their key order from after.
func patchTree(tmpl *yaml.Node, before, after []byte) error {
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return fmt.Errorf("computing the patch: %w", err)
	}
	ref, err := orderedTree(after)
	if err != nil {
		return err
	}
	added := map[*yaml.Node]*yaml.Node{}
	for _, op := range ops {
		if err := applyOp(tmpl, ref, op, added); err != nil {
			return fmt.Errorf("applying %s %s: %w", op.Operation, op.Path, err)
		}
	}
	// The patch comes in no set order: the keys added to one mapping are put in the order of
	// the injector's output, in the places they were added at (the end).
	for m, r := range added {
		var slots []int
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Style&addedKey != 0 {
				m.Content[i].Style &^= addedKey
				slots = append(slots, i)
			}
		}
		pairs := make([][2]*yaml.Node, len(slots))
		for j, i := range slots {
			pairs[j] = [2]*yaml.Node{m.Content[i], m.Content[i+1]}
		}
		rank := func(k string) int {
			if r != nil {
				if i := keyIndex(r, k); i >= 0 {
					return i
				}
			}
			return len(m.Content)
		}
		slices.SortStableFunc(pairs, func(a, b [2]*yaml.Node) int {
			if c := rank(a[0].Value) - rank(b[0].Value); c != 0 {
				return c
			}
			return strings.Compare(a[0].Value, b[0].Value)
		})
		for j, i := range slots {
			m.Content[i], m.Content[i+1] = pairs[j][0], pairs[j][1]
		}
		// A comment that closed the mapping ("# end of the pod spec") still closes it.
		if len(slots) > 0 && slots[0] >= 2 {
			prev, last := m.Content[slots[0]-2], m.Content[len(m.Content)-2]
			last.FootComment, prev.FootComment = prev.FootComment, ""
		}
	}
	return nil
}

// addedKey marks, while a patch is applied, the keys it added. No style of a key has the bit.
const addedKey yaml.Style = 1 << 15

// orderedTree is a node tree of JSON text with its keys in their order.
func orderedTree(js []byte) (*yaml.Node, error) {
	c := &chunk{text: js, line: 1}
	docs, ok, _ := readJSONStream(c)
	if !ok || len(docs) != 1 {
		return nil, fmt.Errorf("reading JSON of %d bytes", len(js))
	}
	return docs[0].root, nil
}

func pointer(path string) []string {
	if path == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, t := range toks {
		toks[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
	}
	return toks
}

func applyOp(root, ref *yaml.Node, op jsonpatch.Operation, added map[*yaml.Node]*yaml.Node) error {
	toks := pointer(op.Path)
	if len(toks) == 0 {
		return fmt.Errorf("a patch of the whole template")
	}
	parent := root
	for _, t := range toks[:len(toks)-1] {
		next, err := child(parent, t)
		if err != nil {
			return err
		}
		parent = next
		if ref != nil {
			ref, _ = child(ref, t)
		}
	}
	parentRef := ref
	if ref != nil {
		ref, _ = child(ref, toks[len(toks)-1])
	}
	last := toks[len(toks)-1]
	if parent.Kind == yaml.ScalarNode && parent.ShortTag() == "!!null" && op.Operation == "add" {
		// "key:" with nothing after it, or null: a mapping or list to be.
		*parent = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: parent.Line}
		if last == "-" || isIndex(last) {
			parent.Kind, parent.Tag = yaml.SequenceNode, "!!seq"
		}
	}
	switch parent.Kind {
	case yaml.MappingNode:
		i := keyIndex(parent, last)
		switch op.Operation {
		case "add", "replace":
			v := valueNode(op.Value, ref, parent.Style&yaml.FlowStyle != 0)
			if i >= 0 {
				keepComments(v, parent.Content[i+1])
				parent.Content[i+1] = v
				return nil
			}
			if op.Operation == "replace" {
				return fmt.Errorf("no key %q", last)
			}
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: last, Style: addedKey}
			parent.Content = append(parent.Content, k, v)
			added[parent] = parentRef
		case "remove":
			if i < 0 {
				return fmt.Errorf("no key %q", last)
			}
			parent.Content = slices.Delete(parent.Content, i, i+2)
		default:
			return fmt.Errorf("unexpected operation")
		}
	case yaml.SequenceNode:
		i := len(parent.Content)
		if last != "-" {
			n, err := strconv.Atoi(last)
			if err != nil || n < 0 || n > len(parent.Content) {
				return fmt.Errorf("index %q out of range", last)
			}
			i = n
		}
		v := valueNode(op.Value, ref, parent.Style&yaml.FlowStyle != 0)
		switch {
		case op.Operation == "add":
			parent.Content = slices.Insert(parent.Content, i, v)
		case i == len(parent.Content):
			return fmt.Errorf("index %q out of range", last)
		case op.Operation == "replace":
			keepComments(v, parent.Content[i])
			parent.Content[i] = v
		case op.Operation == "remove":
			parent.Content = slices.Delete(parent.Content, i, i+1)
		default:
			return fmt.Errorf("unexpected operation")
		}
	default:
		return fmt.Errorf("not an object or a list")
	}
	return nil
}

func isIndex(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func child(n *yaml.Node, tok string) (*yaml.Node, error) {
	if n.Kind == yaml.AliasNode {
		return nil, fmt.Errorf("a YAML alias (*%s) in the way: write the value out", n.Value)
	}
	switch n.Kind {
	case yaml.MappingNode:
		if i := keyIndex(n, tok); i >= 0 {
			return n.Content[i+1], nil
		}
		return nil, fmt.Errorf("no key %q", tok)
	case yaml.SequenceNode:
		i, err := strconv.Atoi(tok)
		if err != nil || i < 0 || i >= len(n.Content) {
			return nil, fmt.Errorf("index %q out of range", tok)
		}
		return n.Content[i], nil
	}
	return nil, fmt.Errorf("%q: not an object or a list", tok)
}

func keyIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// keepComments gives a replacement the comments of the node it replaces, and its flow style
// unless it was empty ("initContainers: []" filled is better written as a block).
func keepComments(to, from *yaml.Node) {
	to.HeadComment, to.LineComment, to.FootComment = from.HeadComment, from.LineComment, from.FootComment
	if to.Kind == from.Kind && to.Kind != yaml.ScalarNode && len(from.Content) > 0 {
		to.Style |= from.Style & yaml.FlowStyle
	}
}

// valueNode makes a node of a JSON value (as encoding/json decodes it), with the keys of
// objects in the order of ref, the same value in the injector's output. flow keeps a value
// put into a flow collection ({...} or [...]) on one line with it.
func valueNode(v any, ref *yaml.Node, flow bool) *yaml.Node {
	var style yaml.Style
	if flow {
		style = yaml.FlowStyle
	}
	switch v := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: style}
		var keys []string
		if ref != nil && ref.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(ref.Content); i += 2 {
				if _, ok := v[ref.Content[i].Value]; ok {
					keys = append(keys, ref.Content[i].Value)
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			var r *yaml.Node
			if ref != nil {
				r, _ = child(ref, k)
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, valueNode(v[k], r, flow))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: style}
		for i, e := range v {
			var r *yaml.Node
			if ref != nil && ref.Kind == yaml.SequenceNode && i < len(ref.Content) {
				r = ref.Content[i]
			}
			n.Content = append(n.Content, valueNode(e, r, flow))
		}
		return n
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}
	case float64:
		if ref != nil && ref.Kind == yaml.ScalarNode && (ref.Tag == "!!int" || ref.Tag == "!!float") {
			// The text of the injector's output: exact where a float64 is not.
			if f, err := strconv.ParseFloat(ref.Value, 64); err == nil && f == v {
				return &yaml.Node{Kind: yaml.ScalarNode, Tag: ref.Tag, Value: ref.Value}
			}
		}
		s := strconv.FormatFloat(v, 'f', -1, 64)
		tag := "!!float"
		if isIndex(s) {
			tag = "!!int"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s}
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v)}
}
