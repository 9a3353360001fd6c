package webhook

import (
	"bytes"
	"strings"
)

// managedFieldsValue finds the value of metadata.managedFields in raw, a pod as the API server
// sends it: raw[start:end]. ok is false when raw has none, or is not the JSON object it should
// be (then nothing is left out of it).
//
// The API server writes managedFields, with the time to the second, before it calls admission
// webhooks: the pods a ReplicaSet makes a second apart differ in nothing else. The injector never
// reads them and the patch never touches them, so the webhook's remembered answers (answers) are
// keyed by the pod without them. Only the first "metadata" member of the top-level object, and
// the first "managedFields" member in it, are looked at, by their bytes: a key written with
// escapes is not found, which only costs a remembered answer.
func managedFieldsValue(raw []byte) (start, end int, ok bool) {
	var s scanner
	s.b = raw
	found := false
	s.members(func(key []byte) bool {
		if found || !bytes.Equal(key, []byte(`"metadata"`)) || s.peek() != '{' {
			return false
		}
		found = true
		s.members(func(key []byte) bool {
			if ok || !bytes.Equal(key, []byte(`"managedFields"`)) {
				return false
			}
			start = s.i
			if !s.value() {
				return true
			}
			end, ok = s.i, true
			return true
		})
		return true
	})
	if s.err || !ok {
		return 0, 0, false
	}
	return start, end, true
}

// scanner walks JSON by its bytes without decoding it.
type scanner struct {
	b   []byte
	i   int
	err bool
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// peek returns the next byte that is not white space, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// members walks the object at the scanner, calling member with each key (quotes included) with
// the scanner at the value; member returns whether it consumed the value, else it is skipped.
func (s *scanner) members(member func(key []byte) bool) {
	if s.peek() != '{' {
		s.err = true
		return
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return
	}
	for !s.err {
		if s.peek() != '"' {
			s.err = true
			return
		}
		k := s.i
		if !s.str() {
			return
		}
		key := s.b[k:s.i]
		if s.peek() != ':' {
			s.err = true
			return
		}
		s.i++
		s.ws()
		if !member(key) && !s.value() {
			return
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.err = true
			return
		}
	}
}

// str skips the string at the scanner.
func (s *scanner) str() bool {
	for i := s.i + 1; i < len(s.b); i++ {
		switch s.b[i] {
		case '\\':
			i++
		case '"':
			s.i = i + 1
			return true
		}
	}
	s.err = true
	return false
}

// value skips the value at the scanner: a string, an object or array (by depth, strings
// skipped whole), or a number or literal.
func (s *scanner) value() bool {
	switch c := s.peek(); {
	case c == '"':
		return s.str()
	case c == '{' || c == '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.str() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
	case c != 0 && c != ',' && c != '}' && c != ']' && c != ':':
		for s.i < len(s.b) && strings.IndexByte(",}] \t\n\r", s.b[s.i]) < 0 {
			s.i++
		}
		return true
	}
	s.err = true
	return false
}

// podKey is raw without the value of metadata.managedFields, as two pieces, to be hashed and
// compared without a copy: the key of a remembered answer.
func podKey(raw []byte) (head, tail []byte) {
	if start, end, ok := managedFieldsValue(raw); ok {
		return raw[:start], raw[end:]
	}
	return raw, nil
}
