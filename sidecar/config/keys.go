package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// checkKeys reports the first object key of a document that is a field's name spelled with other
// capitals ("Version"), or that appears twice in one object. encoding/json would take the first
// for the field and keep the last of the second, silently; the agent's configuration is decoded
// strictly. Unknown keys and syntax errors are left to the decoder, which names them.
func checkKeys(data []byte) error {
	err := walkKeys(json.NewDecoder(bytes.NewReader(data)), reflect.TypeFor[Config](), "")
	if errors.Is(err, errSyntax) {
		return nil
	}
	return err
}

// errSyntax stops the walk at a document that is not JSON.
var errSyntax = errors.New("not JSON")

// walkKeys checks the next value of dec, which decodes into t (nil: not known), at path.
func walkKeys(dec *json.Decoder, t reflect.Type, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return errSyntax
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch tok {
	case json.Delim('{'):
		fields := map[string]reflect.Type{}
		if t != nil && t.Kind() == reflect.Struct {
			for f := range t.Fields() {
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if f.IsExported() && name != "" && name != "-" {
					fields[name] = f.Type
				}
			}
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return errSyntax
			}
			key, _ := kt.(string)
			field := path + key
			if seen[key] {
				return fmt.Errorf("%s: appears twice in one object", field)
			}
			seen[key] = true
			var ft reflect.Type
			switch {
			case t == nil:
			case t.Kind() == reflect.Map:
				ft = t.Elem()
			default:
				var ok bool
				if ft, ok = fields[key]; !ok {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return fmt.Errorf("%s: unknown field; did you mean %s%s? (names are case-sensitive)", field, path, name)
						}
					}
				}
			}
			if err := walkKeys(dec, ft, field+"."); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return errSyntax
		}
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkKeys(dec, elem, fmt.Sprintf("%s[%d].", strings.TrimSuffix(path, "."), i)); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return errSyntax
		}
	}
	return nil
}
