package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// write returns the input with every changed document written anew from its tree; the text of
// unchanged documents, of separators and between JSON values is kept byte for byte.
func write(chunks []*chunk) ([]byte, error) {
	var out bytes.Buffer
	for _, c := range chunks {
		pos := 0
		for _, d := range c.docs {
			if !d.changed {
				continue
			}
			out.Write(c.text[pos:d.start])
			var (
				b   []byte
				err error
			)
			if d.format == formatJSON {
				b = encodeJSON(d.root, c.text[d.start:d.end])
			} else {
				b, err = encodeYAML(d.root, c.text)
			}
			if err != nil {
				return nil, fmt.Errorf("document %d: encoding: %w", d.index, err)
			}
			out.Write(b)
			pos = d.end
		}
		out.Write(c.text[pos:])
	}
	return out.Bytes(), nil
}

// encodeYAML writes a YAML document in the style of its text: the separator line that opened
// it, its indentation, and whether a list under a key is indented ("key:\n  - a") or not
// ("key:\n- a", as kubectl writes).
func encodeYAML(root *yaml.Node, text []byte) ([]byte, error) {
	var out bytes.Buffer
	if first, _, _ := bytes.Cut(text, []byte("\n")); isSeparator(bytes.TrimRight(first, "\r")) {
		// A comment after the separator is the document's head comment: written with it.
		out.WriteString("---\n")
	}
	indent, compact := yamlStyle(text)
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(indent)
	if compact {
		enc.CompactSeqIndent()
	}
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// yamlStyle guesses the indentation of a YAML text (2 unless it says otherwise) and whether its
// block lists sit at the indentation of their key.
func yamlStyle(text []byte) (indent int, compact bool) {
	indent, compact = 0, true
	var prevKey = -1 // indentation of the previous line if it was "key:" with nothing after it
	for line := range strings.SplitSeq(string(text), "\n") {
		t := strings.TrimLeft(line, " ")
		if t == "" || t[0] == '#' {
			continue
		}
		n := len(line) - len(t)
		if prevKey >= 0 {
			if strings.HasPrefix(t, "- ") || t == "-" {
				compact = n == prevKey
				if n > prevKey && indent == 0 {
					indent = n - prevKey
				}
			} else if n > prevKey && indent == 0 {
				indent = n - prevKey
			}
		}
		prevKey = -1
		if strings.HasSuffix(strings.TrimRight(t, " \r"), ":") && !strings.HasPrefix(t, "- ") {
			prevKey = n
		}
	}
	if indent < 2 || indent > 8 {
		indent = 2
	}
	return indent, compact
}

// encodeJSON writes a JSON value in the style of its text: on one line if it was (with a space
// after colons and commas if it had them), else indented as it was (two spaces unless it says
// otherwise).
func encodeJSON(n *yaml.Node, text []byte) []byte {
	var out bytes.Buffer
	w := jsonWriter{out: &out}
	indent := ""
	if bytes.Contains(bytes.TrimSpace(text), []byte("\n")) {
		indent = "  "
		for line := range strings.SplitSeq(string(text), "\n") {
			if t := strings.TrimLeft(line, " \t"); t != "" && len(t) < len(line) {
				indent = line[:len(line)-len(t)]
				break
			}
		}
	}
	w.indent = indent
	w.colon, w.comma = ":", ","
	if indent != "" || bytes.Contains(text, []byte(`": `)) {
		w.colon = ": "
	}
	if indent == "" && bytes.Contains(text, []byte(`, "`)) {
		w.comma = ", "
	}
	w.write(n, "")
	return out.Bytes()
}

type jsonWriter struct {
	out                  *bytes.Buffer
	indent, colon, comma string
}

func (w *jsonWriter) write(n *yaml.Node, prefix string) {
	out, indent := w.out, w.indent
	newline := func(p string) {
		if indent != "" {
			out.WriteByte('\n')
			out.WriteString(p)
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		w.write(n.Content[0], prefix)
	case yaml.AliasNode:
		w.write(n.Alias, prefix)
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			out.WriteString("{}")
			return
		}
		out.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				out.WriteString(w.comma)
			}
			newline(prefix + indent)
			out.Write(jsonString(n.Content[i].Value))
			out.WriteString(w.colon)
			w.write(n.Content[i+1], prefix+indent)
		}
		newline(prefix)
		out.WriteByte('}')
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			out.WriteString("[]")
			return
		}
		out.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				out.WriteString(w.comma)
			}
			newline(prefix + indent)
			w.write(c, prefix+indent)
		}
		newline(prefix)
		out.WriteByte(']')
	default:
		switch n.ShortTag() {
		case "!!int", "!!float", "!!bool":
			out.WriteString(n.Value)
		case "!!null":
			out.WriteString("null")
		default:
			out.Write(jsonString(n.Value))
		}
	}
}

func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
