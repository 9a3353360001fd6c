package parse

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the OTLP common messages (opentelemetry/proto/common/v1/common.proto).
const (
	anyString = 1 // AnyValue.string_value
	anyBool   = 2 // AnyValue.bool_value
	anyInt    = 3 // AnyValue.int_value
	anyDouble = 4 // AnyValue.double_value
	anyArray  = 5 // AnyValue.array_value
	anyKvlist = 6 // AnyValue.kvlist_value
	listValue = 1 // ArrayValue.values and KeyValueList.values
	kvKey     = 1 // KeyValue.key
	kvValue   = 2 // KeyValue.value
)

// AppendKeyValues appends the members of the line last scanned as the content of an OTLP
// KeyValueList: one values field (a KeyValue) per member, in the line's order, each value an
// AnyValue (an object a kvlist_value, an array an array_value, a number int_value or
// double_value as Scan decided, null an empty AnyValue). It panics if the last Scan failed.
func (t *Transcoder) AppendKeyValues(dst []byte) []byte {
	if !t.scanned {
		panic("parse: AppendKeyValues without a successful Scan")
	}
	e := emitter{b: t.line, counts: t.counts, nums: t.nums, strs: t.strs}
	e.space()
	return e.kvlist(dst)
}

// kvlist writes the members of the object at e.i as KeyValueList.values fields.
func (e *emitter) kvlist(dst []byte) []byte {
	n := e.counts[e.ci]
	e.ci++
	e.i++ // '{'
	for range n {
		e.space()
		dst = protowire.AppendTag(dst, listValue, protowire.BytesType)
		var kv int
		dst, kv = BeginLen(dst)
		dst = protowire.AppendTag(dst, kvKey, protowire.BytesType)
		dst = e.protoStr(dst)
		e.space()
		e.i++ // ':'
		e.space()
		dst = protowire.AppendTag(dst, kvValue, protowire.BytesType)
		dst = e.anyValue(dst)
		dst = EndLen(dst, kv)
		e.space()
		e.i++ // ',' or '}'
	}
	if n == 0 {
		e.space()
		e.i++ // '}'
	}
	return dst
}

// anyValue writes the value at e.i as a length-prefixed AnyValue.
func (e *emitter) anyValue(dst []byte) []byte {
	var v int
	dst, v = BeginLen(dst)
	switch e.b[e.i] {
	case '{':
		dst = protowire.AppendTag(dst, anyKvlist, protowire.BytesType)
		var l int
		dst, l = BeginLen(dst)
		dst = e.kvlist(dst)
		dst = EndLen(dst, l)
	case '[':
		n := e.counts[e.ci]
		e.ci++
		e.i++
		dst = protowire.AppendTag(dst, anyArray, protowire.BytesType)
		var l int
		dst, l = BeginLen(dst)
		for range n {
			e.space()
			dst = protowire.AppendTag(dst, listValue, protowire.BytesType)
			dst = e.anyValue(dst)
			e.space()
			e.i++ // ',' or ']'
		}
		if n == 0 {
			e.space()
			e.i++
		}
		dst = EndLen(dst, l)
	case '"':
		dst = protowire.AppendTag(dst, anyString, protowire.BytesType)
		dst = e.protoStr(dst)
	case 't':
		e.i += 4
		dst = protowire.AppendTag(dst, anyBool, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	case 'f':
		e.i += 5
		dst = protowire.AppendTag(dst, anyBool, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 0)
	case 'n':
		e.i += 4 // an empty AnyValue: no value
	default:
		for e.i < len(e.b) && isNumberByte(e.b[e.i]) {
			e.i++
		}
		num := e.nums[e.ni]
		e.ni++
		if num.isInt {
			dst = protowire.AppendTag(dst, anyInt, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(num.i))
		} else {
			dst = protowire.AppendTag(dst, anyDouble, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, math.Float64bits(num.f))
		}
	}
	return EndLen(dst, v)
}

// protoStr writes the string at e.i, unescaped, as a length-prefixed protobuf string.
func (e *emitter) protoStr(dst []byte) []byte {
	start := e.i + 1
	end, flags := e.strs[e.si]>>strFlags, e.strs[e.si]&(1<<strFlags-1)
	e.si++
	raw := e.b[start : end-1]
	e.i = end
	if flags == 0 || flags == strNonASCII && utf8.Valid(raw) {
		return protowire.AppendBytes(dst, raw)
	}
	var s int
	dst, s = BeginLen(dst)
	dst = unquote(dst, raw)
	return EndLen(dst, s)
}

// BeginLen reserves one byte for the length of a protobuf field whose size is not known yet and
// returns where its content starts, for EndLen.
func BeginLen(dst []byte) ([]byte, int) { return append(dst, 0), len(dst) + 1 }

// EndLen writes the length of the content that began at start (from BeginLen), moving the
// content when the length needs more than the byte reserved. It does not allocate once dst has
// the room.
func EndLen(dst []byte, start int) []byte {
	n := len(dst) - start
	k := protowire.SizeVarint(uint64(n))
	if k == 1 {
		dst[start-1] = byte(n)
		return dst
	}
	dst = append(dst, make([]byte, k-1)...)
	copy(dst[start+k-1:], dst[start:start+n])
	protowire.AppendVarint(dst[:start-1], uint64(n))
	return dst
}
