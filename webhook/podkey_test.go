package webhook

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func TestManagedFieldsValue(t *testing.T) {
	const mf = `[{"manager":"kube-controller-manager","operation":"Update","time":"2026-11-30T18:00:01Z","fieldsV1":{"f:metadata":{"f:generateName":{}}}}]`
	for _, tt := range []struct {
		name, raw, want string // want: the value found, "" for none
	}{
		{"a ReplicaSet's pod", `{"kind":"Pod","metadata":{"generateName":"web-5d8f-","managedFields":` + mf + `,"labels":{"a":"b"}},"spec":{}}`, mf},
		{"first member", `{"metadata":{"managedFields":` + mf + `}}`, mf},
		{"white space", "{ \"metadata\" :\n { \"name\" : \"x\" ,\t\"managedFields\" : " + mf + " } }", mf},
		{"after strings with braces and escapes", `{"a":"}\"{[","metadata":{"annotations":{"x":"\\\"managedFields\":[]"},"managedFields":` + mf + `}}`, mf},
		{"none", `{"metadata":{"name":"web"},"spec":{"containers":[]}}`, ""},
		{"not under metadata", `{"spec":{"metadata":{"managedFields":[]}},"metadata":{}}`, ""},
		{"metadata not an object", `{"metadata":null,"x":{"managedFields":[]}}`, ""},
		{"escaped key", `{"metadata":{"managed\u0046ields":[]}}`, ""},
		{"truncated", `{"metadata":{"managedFields":[{"a":1}`, ""},
		{"unterminated string", `{"metadata":{"managedFields":["abc`, ""},
		{"not an object", `["metadata"]`, ""},
		{"empty", ``, ""},
	} {
		start, end, ok := managedFieldsValue([]byte(tt.raw))
		got := ""
		if ok {
			got = tt.raw[start:end]
		}
		if got != tt.want {
			t.Errorf("%s: found %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzManagedFieldsValue: what is found is exactly the value of metadata.managedFields, as
// encoding/json reads the document, and it is found whenever the document has one.
func FuzzManagedFieldsValue(f *testing.F) {
	for _, s := range []string{
		`{"kind":"Pod","metadata":{"generateName":"web-","managedFields":[{"manager":"m","time":"2026-11-30T18:00:01Z"}]},"spec":{}}`,
		`{"metadata":{"managedFields":null}}`,
		`{"metadata":{"name":"a\"}","managedFields":{"x":[1,2,{"y":"]"}]}}}`,
		`{"metadata":{}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","managedFields":[{"manager":"m","operation":"Update","time":"2026-11-30T18:00:01Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{}}}],"annotations":{"sidelog.io/tail.app":"/var/log/app/*.log"}},"spec":{"containers":[{"name":"app","image":"x"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		start, end, ok := managedFieldsValue(raw)
		var doc map[string]any
		if json.Unmarshal(raw, &doc) != nil {
			return // the webhook answers an undecodable pod with an error, never remembered
		}
		meta, _ := doc["metadata"].(map[string]any)
		want, has := meta["managedFields"]
		if !ok {
			// Left in the key: only a cost. Found whenever plain keys carry it once.
			if has && !hasEscapesOrDuplicates(raw) {
				t.Fatalf("managedFields not found in %s", raw)
			}
			return
		}
		var got any
		if err := json.Unmarshal(raw[start:end], &got); err != nil {
			t.Fatalf("found %q, not a JSON value: %v", raw[start:end], err)
		}
		if !has && !hasEscapesOrDuplicates(raw) || has && !reflect.DeepEqual(got, want) && !hasEscapesOrDuplicates(raw) {
			t.Fatalf("found %s in %s, want metadata.managedFields %v (present %v)", raw[start:end], raw, want, has)
		}
		// What is left out is one JSON value: replaced by null, the document still reads, the
		// same but for that member.
		nulled := append(append(append([]byte{}, raw[:start]...), "null"...), raw[end:]...)
		var other map[string]any
		if err := json.Unmarshal(nulled, &other); err != nil {
			t.Fatalf("%s without the value found is no longer JSON: %v", raw, err)
		}
		// What the key leaves out is nothing the webhook reads: decoded as the handler decodes
		// a pod, escapes and repeated keys included, the two documents are the same pod but for
		// its managedFields.
		if pod, err := decodePod(raw); err == nil {
			without, err := decodePod(nulled)
			if err != nil {
				t.Fatalf("%s decodes, but not without the value found: %v", raw, err)
			}
			pod.ManagedFields, without.ManagedFields = nil, nil
			if !reflect.DeepEqual(pod, without) {
				t.Fatalf("%s: leaving out %s changes the pod", raw, raw[start:end])
			}
		}
	})
}

// decodePod decodes raw as the handler's admission decoder does.
func decodePod(raw []byte) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := admission.NewDecoder(scheme.Scheme).DecodeRaw(runtime.RawExtension{Raw: raw}, pod)
	return pod, err
}

// hasEscapesOrDuplicates reports whether raw has a backslash (a key may be escaped) or a
// repeated "metadata" or "managedFields" key, where encoding/json and the scanner may see
// different members.
func hasEscapesOrDuplicates(raw []byte) bool {
	s := string(raw)
	return strings.Contains(s, `\`) || strings.Count(s, `"metadata"`) > 1 || strings.Count(s, `"managedFields"`) > 1
}
