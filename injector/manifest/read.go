package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// format is how a document was written; it is written back the same way.
type format int

const (
	formatYAML format = iota
	formatJSON
)

// chunk is the text between two YAML document separators ("---" lines), the separator that
// opens it included. It holds one YAML document, or one or more JSON values (a stream, as
// `jq -c` prints).
type chunk struct {
	text []byte
	// line is the line of the input on which text starts, from 1.
	line int
	docs []*doc
}

// doc is one YAML document or JSON value of the input.
type doc struct {
	// index counts the documents of the input from 1.
	index  int
	format format
	// line is where the document starts in the input.
	line int
	// start and end delimit its text in its chunk's.
	start, end int
	// root is the parsed document: for YAML a DocumentNode, for JSON its value.
	root *yaml.Node
	// changed says root differs from the text and must be written anew.
	changed bool
}

// value is the document's top-level value.
func (d *doc) value() *yaml.Node {
	if d.root.Kind == yaml.DocumentNode {
		if len(d.root.Content) == 0 {
			return nil
		}
		return d.root.Content[0]
	}
	return d.root
}

// readInput splits the input into chunks and parses each document. Node lines are numbered
// from the start of the input, not of the chunk.
func readInput(data []byte, where func(line int) string) ([]*chunk, error) {
	var (
		chunks []*chunk
		errs   []error
		index  int
	)
	for _, c := range splitChunks(data) {
		chunks = append(chunks, c)
		docs, ok, jerr := readJSONStream(c)
		if jerr != nil {
			// A stream whose first value is JSON: the mistake is in a later one.
			errs = append(errs, fmt.Errorf("%s: document %d: parsing JSON: %v", where(jerr.line), index+len(docs)+1, jerr.err))
			index += len(docs) + 1
			continue
		}
		if ok {
			for _, d := range docs {
				index++
				d.index = index
			}
			c.docs = docs
			continue
		}
		var root yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(c.text))
		err := dec.Decode(&root)
		if err == io.EOF {
			continue // comments and blank lines only
		}
		index++
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %s", where(yamlErrorLine(err, c.line)), index, yamlErrorText(err)))
			continue
		}
		var extra yaml.Node
		if err := dec.Decode(&extra); err != io.EOF {
			line := c.line
			if err != nil {
				line = yamlErrorLine(err, c.line)
			} else {
				line += extra.Line - 1
			}
			errs = append(errs, fmt.Errorf("%s: document %d: more than one YAML document without a --- line between them, or text after the document", where(line), index))
			continue
		}
		shiftLines(&root, c.line-1)
		c.docs = []*doc{{index: index, format: formatYAML, line: c.line, end: len(c.text), root: &root}}
	}
	return chunks, errors.Join(errs...)
}

// splitChunks cuts data before every line that is a document separator: "---" alone or
// followed by a space, a tab or a comment.
func splitChunks(data []byte) []*chunk {
	var chunks []*chunk
	start, startLine, line := 0, 1, 1
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		l := bytes.TrimRight(data[off:next], "\r\n")
		if off > start && isSeparator(l) {
			chunks = append(chunks, &chunk{text: data[start:off], line: startLine})
			start, startLine = off, line
		}
		off = next
	}
	if start < len(data) || len(chunks) == 0 {
		chunks = append(chunks, &chunk{text: data[start:], line: startLine})
	}
	return chunks
}

func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	return ok && (len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t')
}

// readJSONStream reads the chunk as a stream of JSON values, if it is one: it opens with { or
// [ (after a separator line) and holds nothing but JSON values and white space.
func readJSONStream(c *chunk) ([]*doc, bool, *jsonError) {
	text := c.text
	body := 0
	if first := bytes.IndexByte(text, '\n'); first >= 0 && isSeparator(bytes.TrimRight(text[:first], "\r")) {
		body = first + 1
	}
	trimmed := bytes.TrimLeft(text[body:], " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' && trimmed[0] != '[' {
		return nil, false, nil
	}
	var docs []*doc
	dec := json.NewDecoder(bytes.NewReader(text[body:]))
	dec.UseNumber()
	nl, line0 := newlines(text[body:]), c.line+bytes.Count(text[:body], []byte("\n"))
	for {
		// The decoder's offset is after the previous value; the next one starts after spaces.
		off := int(dec.InputOffset())
		off += len(text[body+off:]) - len(bytes.TrimLeft(text[body+off:], " \t\r\n"))
		if body+off == len(text) {
			return docs, len(docs) > 0, nil
		}
		b := &nodeBuilder{dec: dec, text: text[body:], lines: nl, line0: line0}
		n, err := b.value()
		if err != nil {
			if len(docs) == 0 {
				return nil, false, nil // YAML in flow style, perhaps
			}
			at := body + int(dec.InputOffset())
			var se *json.SyntaxError
			if errors.As(err, &se) {
				at = body + int(se.Offset)
			}
			return docs, false, &jsonError{line: c.line + lineAt(text, at) - 1, err: err}
		}
		start := body + off
		docs = append(docs, &doc{format: formatJSON, line: lineAt(text, start) + c.line - 1, start: start, end: body + int(dec.InputOffset()), root: n})
	}
}

type jsonError struct {
	line int
	err  error
}

// nodeBuilder makes a yaml.Node tree of one JSON value, keeping the order of keys and the
// text of numbers.
type nodeBuilder struct {
	dec  *json.Decoder
	text []byte
	// lines are the offsets of the newlines of text; line0 is the input's line of its start.
	lines []int
	line0 int
}

func newlines(text []byte) []int {
	var nl []int
	for i, c := range text {
		if c == '\n' {
			nl = append(nl, i)
		}
	}
	return nl
}

func (b *nodeBuilder) value() (*yaml.Node, error) {
	off := int(b.dec.InputOffset())
	tok, err := b.dec.Token()
	if err != nil {
		return nil, err
	}
	// The token starts after the separators (spaces, commas, colons) that follow off.
	rest := b.text[off:]
	skip := len(rest) - len(bytes.TrimLeft(rest, " \t\r\n,:"))
	line, _ := slices.BinarySearch(b.lines, off+skip)
	n := &yaml.Node{Line: b.line0 + line}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
			for b.dec.More() {
				k, err := b.value()
				if err != nil {
					return nil, err
				}
				if k.Tag != "!!str" {
					return nil, errors.New("a key is not a string")
				}
				v, err := b.value()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, k, v)
			}
		} else {
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
			for b.dec.More() {
				v, err := b.value()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
		}
		if _, err := b.dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
	case string:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!str", t
	case json.Number:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!float", t.String()
		if _, err := strconv.ParseInt(t.String(), 10, 64); err == nil {
			n.Tag = "!!int"
		}
	case bool:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!bool", strconv.FormatBool(t)
	case nil:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!null", "null"
	}
	return n, nil
}

// lineAt is the line, from 1, of byte off of text.
func lineAt(text []byte, off int) int {
	return bytes.Count(text[:min(off, len(text))], []byte("\n")) + 1
}

func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlErrorLine and yamlErrorText take a yaml.v3 error apart: its line (of the chunk) and
// what it says.
func yamlErrorLine(err error, chunkLine int) int {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n + chunkLine - 1
	}
	return chunkLine
}

func yamlErrorText(err error) string {
	s := yamlLine.ReplaceAllString(err.Error(), "")
	return "parsing YAML: " + strings.TrimPrefix(s, "yaml: ")
}
