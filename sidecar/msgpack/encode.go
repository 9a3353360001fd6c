// Package msgpack is the part of MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md)
// that the Fluentd forward protocol needs: append-style encoders that never allocate beyond
// growing the destination, the protocol's EventTime extension, and a small decoder for what
// servers send back (acknowledgements, HELO, PONG) and for test receivers.
//
// It exists instead of a general library because the agent's hot path appends pre-encoded bytes
// around each log line, and the few types it needs fit in one file.
package msgpack

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
)

// EventTimeType is the extension type of the forward protocol's EventTime: 4 bytes of seconds and
// 4 bytes of nanoseconds since the Unix epoch, both big-endian.
const EventTimeType = 0

// AppendNil appends nil.
func AppendNil(b []byte) []byte { return append(b, 0xc0) }

// AppendBool appends a boolean.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// AppendInt appends v in the smallest integer format; non-negative values use the unsigned ones,
// as the reference encoders do.
func AppendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return AppendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
	}
}

// AppendUint appends v in the smallest unsigned integer format.
func AppendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

// AppendFloat64 appends v as a float 64.
func AppendFloat64(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(v))
}

// AppendStringHeader appends the header of a str of n bytes; the caller appends the bytes.
func AppendStringHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
}

// AppendString appends s as a str. MessagePack asks for UTF-8 but receivers take the bytes, so s
// is written as it is, as Fluent Bit does with log lines.
func AppendString(b []byte, s string) []byte {
	return append(AppendStringHeader(b, len(s)), s...)
}

// AppendStringBytes appends s as a str, like AppendString.
func AppendStringBytes(b []byte, s []byte) []byte {
	return append(AppendStringHeader(b, len(s)), s...)
}

// AppendBinaryHeader appends the header of a bin of n bytes; the caller appends the bytes.
func AppendBinaryHeader(b []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
}

// AppendBinary appends v as a bin.
func AppendBinary(b []byte, v []byte) []byte {
	return append(AppendBinaryHeader(b, len(v)), v...)
}

// AppendArrayHeader appends the header of an array of n elements; the caller appends them.
func AppendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

// AppendMapHeader appends the header of a map of n key/value pairs; the caller appends them, key
// then value.
func AppendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

// AppendEventTime appends t as the forward protocol's EventTime (fixext 8, type 0). The seconds
// field is 32 bits unsigned, so times outside 1970–2106 wrap, as in every implementation.
func AppendEventTime(b []byte, t time.Time) []byte {
	b = append(b, 0xd7, EventTimeType)
	b = binary.BigEndian.AppendUint32(b, uint32(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// Ext is an extension value other than EventTime.
type Ext struct {
	Type int8
	Data []byte
}

// AppendValue appends v, which may be nil, a bool, any integer type, a float32 or float64, a
// string, a []byte (bin), a time.Time (EventTime), an Ext, or a []any or map[string]any of those.
// Map keys are written sorted, so the output is deterministic. It is for tests and small messages,
// not for the hot path.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return AppendNil(b), nil
	case bool:
		return AppendBool(b, v), nil
	case int:
		return AppendInt(b, int64(v)), nil
	case int8:
		return AppendInt(b, int64(v)), nil
	case int16:
		return AppendInt(b, int64(v)), nil
	case int32:
		return AppendInt(b, int64(v)), nil
	case int64:
		return AppendInt(b, v), nil
	case uint:
		return AppendUint(b, uint64(v)), nil
	case uint8:
		return AppendUint(b, uint64(v)), nil
	case uint16:
		return AppendUint(b, uint64(v)), nil
	case uint32:
		return AppendUint(b, uint64(v)), nil
	case uint64:
		return AppendUint(b, v), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 0xca), math.Float32bits(v)), nil
	case float64:
		return AppendFloat64(b, v), nil
	case string:
		return AppendString(b, v), nil
	case []byte:
		return AppendBinary(b, v), nil
	case time.Time:
		return AppendEventTime(b, v), nil
	case Ext:
		return appendExt(b, v), nil
	case []any:
		b = AppendArrayHeader(b, len(v))
		for i, e := range v {
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return b, fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return b, nil
	case map[string]any:
		b = AppendMapHeader(b, len(v))
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = AppendString(b, k)
			var err error
			if b, err = AppendValue(b, v[k]); err != nil {
				return b, fmt.Errorf("[%q]: %w", k, err)
			}
		}
		return b, nil
	default:
		return b, fmt.Errorf("msgpack: cannot encode a %T", v)
	}
}

func appendExt(b []byte, e Ext) []byte {
	n := len(e.Data)
	switch n {
	case 1:
		b = append(b, 0xd4)
	case 2:
		b = append(b, 0xd5)
	case 4:
		b = append(b, 0xd6)
	case 8:
		b = append(b, 0xd7)
	case 16:
		b = append(b, 0xd8)
	default:
		switch {
		case n <= math.MaxUint8:
			b = append(b, 0xc7, byte(n))
		case n <= math.MaxUint16:
			b = binary.BigEndian.AppendUint16(append(b, 0xc8), uint16(n))
		default:
			b = binary.BigEndian.AppendUint32(append(b, 0xc9), uint32(n))
		}
	}
	return append(append(b, byte(e.Type)), e.Data...)
}
