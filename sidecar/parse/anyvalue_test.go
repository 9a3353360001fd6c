package parse

import (
	"bytes"
	"encoding/json"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzAppendKeyValues checks the OTLP transcoder against encoding/json: what an accepted object
// becomes decodes as an OTLP KeyValueList (with the official types, which also check that every
// string is UTF-8) holding the same values.
func FuzzAppendKeyValues(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"level":"info","msg":"hello","n":-12.5e3,"ok":true,"x":null}`,
		`{"s":"\u00e9\ud83d\ude00\ud800\\\"\/\b\f\n\r\t"}`, `{"a":[1,[2,{"b":[]}]],"c":{}}`,
		"{\"k\xff\":\"v\xed\xa0\x80\"}", `{"big":123456789012345678901234567890,"neg":-9223372036854775809}`,
		`{"a":"` + string(bytes.Repeat([]byte("x"), 300)) + `","b":{"c":[` + string(bytes.Repeat([]byte(`"y",`), 100)) + `"z"]}}`,
	} {
		f.Add([]byte(s))
	}
	var tr Transcoder
	f.Fuzz(func(t *testing.T, line []byte) {
		if _, err := tr.Scan(line); err != nil {
			return // FuzzAppendMap checks what is accepted
		}
		out := tr.AppendKeyValues(nil)
		var kvl commonpb.KeyValueList
		if err := proto.Unmarshal(out, &kvl); err != nil {
			t.Fatalf("output of %q does not decode as a KeyValueList: %v", line, err)
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var exact any
		if err := dec.Decode(&exact); err != nil {
			t.Fatal(err)
		}
		if msg := compare(exact, kvlistToGo(&kvl)); msg != "" {
			t.Fatalf("%q: %s", line, msg)
		}
	})
}

// kvlistToGo turns a KeyValueList into the values msgpack.Decode would give for the same object,
// a later key winning over an earlier one as in encoding/json.
func kvlistToGo(l *commonpb.KeyValueList) map[string]any {
	m := map[string]any{}
	for _, kv := range l.Values {
		m[kv.Key] = anyToGo(kv.Value)
	}
	return m
}

func anyToGo(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_ArrayValue:
		out := []any{}
		for _, e := range x.ArrayValue.Values {
			out = append(out, anyToGo(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return kvlistToGo(x.KvlistValue)
	}
	return nil
}
