package msgpack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrShort means the data ends inside a value: a stream reader reads more and tries again.
var ErrShort = errors.New("msgpack: unexpected end of data")

// MaxDepth is how deeply Decode follows nested arrays and maps. It is above what the agent can
// produce (a record holds JSON nested up to encoding/json's limit of 10000) and keeps a hostile
// input from exhausting the stack.
const MaxDepth = 16384

type kind uint8

const (
	kindNil kind = iota
	kindBool
	kindInt
	kindUint
	kindFloat32
	kindFloat64
	kindStr
	kindBin
	kindArray
	kindMap
	kindExt
)

var kindNames = [...]string{"nil", "bool", "int", "uint", "float32", "float64", "str", "bin", "array", "map", "ext"}

func (k kind) String() string { return kindNames[k] }

// header is one value's type byte and length fields.
type header struct {
	kind kind
	// n is the length of the header itself, type byte included.
	n int
	// size is the payload length of a str, bin or ext, or the element count of an array or map.
	size int
	// bits is the value of a bool, int, uint or float (as its IEEE 754 bits).
	bits    uint64
	extType int8
}

// readHeader reads the header at the start of b. It returns ErrShort when b ends inside it.
func readHeader(b []byte) (h header, err error) {
	if len(b) == 0 {
		return h, ErrShort
	}
	c := b[0]
	h.n = 1
	switch {
	case c <= 0x7f:
		h.kind, h.bits = kindUint, uint64(c)
		return h, nil
	case c >= 0xe0:
		h.kind, h.bits = kindInt, uint64(int64(int8(c)))
		return h, nil
	case c&0xf0 == 0x80:
		h.kind, h.size = kindMap, int(c&0x0f)
		return h, nil
	case c&0xf0 == 0x90:
		h.kind, h.size = kindArray, int(c&0x0f)
		return h, nil
	case c&0xe0 == 0xa0:
		h.kind, h.size = kindStr, int(c&0x1f)
		return h, nil
	}
	// The remaining formats have a fixed-width field after the type byte.
	var width int
	switch c {
	case 0xc0:
		h.kind = kindNil
		return h, nil
	case 0xc2, 0xc3:
		h.kind, h.bits = kindBool, uint64(c&1)
		return h, nil
	case 0xc4, 0xd9:
		width = 1
	case 0xc5, 0xda, 0xdc, 0xde:
		width = 2
	case 0xc6, 0xdb, 0xdd, 0xdf:
		width = 4
	case 0xc7:
		width = 2 // size, type
	case 0xc8:
		width = 3
	case 0xc9:
		width = 5
	case 0xca:
		width = 4
	case 0xcb:
		width = 8
	case 0xcc, 0xd0:
		width = 1
	case 0xcd, 0xd1:
		width = 2
	case 0xce, 0xd2:
		width = 4
	case 0xcf, 0xd3:
		width = 8
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		width = 1 // type
	default: // 0xc1 is never used
		return h, fmt.Errorf("msgpack: invalid type byte 0x%02x", c)
	}
	if len(b) < 1+width {
		return h, ErrShort
	}
	f := b[1 : 1+width]
	h.n = 1 + width
	switch c {
	case 0xc4, 0xc5, 0xc6:
		h.kind, h.size = kindBin, int(uintN(f))
	case 0xd9, 0xda, 0xdb:
		h.kind, h.size = kindStr, int(uintN(f))
	case 0xdc, 0xdd:
		h.kind, h.size = kindArray, int(uintN(f))
	case 0xde, 0xdf:
		h.kind, h.size = kindMap, int(uintN(f))
	case 0xc7, 0xc8, 0xc9:
		h.kind, h.size, h.extType = kindExt, int(uintN(f[:width-1])), int8(f[width-1])
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		h.kind, h.size, h.extType = kindExt, 1<<(c-0xd4), int8(f[0])
	case 0xca:
		h.kind, h.bits = kindFloat32, uintN(f)
	case 0xcb:
		h.kind, h.bits = kindFloat64, uintN(f)
	case 0xcc, 0xcd, 0xce, 0xcf:
		h.kind, h.bits = kindUint, uintN(f)
	case 0xd0:
		h.kind, h.bits = kindInt, uint64(int64(int8(f[0])))
	case 0xd1:
		h.kind, h.bits = kindInt, uint64(int64(int16(uintN(f))))
	case 0xd2:
		h.kind, h.bits = kindInt, uint64(int64(int32(uintN(f))))
	case 0xd3:
		h.kind, h.bits = kindInt, uintN(f)
	}
	if h.size < 0 { // a 32-bit length on a 32-bit platform
		return h, fmt.Errorf("msgpack: length %d does not fit in an int", uint32(h.size))
	}
	return h, nil
}

func uintN(f []byte) uint64 {
	switch len(f) {
	case 1:
		return uint64(f[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(f))
	case 4:
		return uint64(binary.BigEndian.Uint32(f))
	default:
		return binary.BigEndian.Uint64(f)
	}
}

// hasPayload reports whether size counts bytes after the header rather than elements.
func (h header) hasPayload() bool {
	return h.kind == kindStr || h.kind == kindBin || h.kind == kindExt
}

// Skip returns b after the value at its start, checking only the structure. It does not allocate.
func Skip(b []byte) ([]byte, error) {
	n, err := valueLen(b)
	if err != nil {
		return b, err
	}
	return b[n:], nil
}

// valueLen returns the length of the value at the start of b.
func valueLen(b []byte) (n int, err error) {
	n, _, _, err = scan(b, 0, 1)
	return n, err
}

// scan skips pending values in b from pos and returns where they end. When b is too short it
// returns ErrShort with the position and count to resume from once more data is there (so that
// a stream reader scans each byte once), and need, a lower bound of the length b must have.
func scan(b []byte, pos, pending int) (end, left, need int, err error) {
	for pending > 0 {
		h, err := readHeader(b[pos:])
		if err != nil {
			// Each pending value takes at least one byte.
			return pos, pending, pos + pending, err
		}
		next := pos + h.n
		if h.hasPayload() {
			if len(b)-next < h.size {
				return pos, pending, next + h.size + pending - 1, ErrShort
			}
			next += h.size
		}
		pending--
		switch h.kind {
		case kindArray:
			pending += h.size
		case kindMap:
			pending += 2 * h.size
		}
		pos = next
	}
	return pos, 0, pos, nil
}

// ReadArrayHeader reads an array header and returns its element count.
func ReadArrayHeader(b []byte) (n int, rest []byte, err error) {
	h, err := readHeader(b)
	if err != nil {
		return 0, b, err
	}
	if h.kind != kindArray {
		return 0, b, fmt.Errorf("msgpack: got %s, want array", h.kind)
	}
	return h.size, b[h.n:], nil
}

// ReadMapHeader reads a map header and returns its pair count.
func ReadMapHeader(b []byte) (n int, rest []byte, err error) {
	h, err := readHeader(b)
	if err != nil {
		return 0, b, err
	}
	if h.kind != kindMap {
		return 0, b, fmt.Errorf("msgpack: got %s, want map", h.kind)
	}
	return h.size, b[h.n:], nil
}

// ReadBytes reads a str or a bin and returns its bytes, which alias b.
func ReadBytes(b []byte) (v, rest []byte, err error) {
	h, err := readHeader(b)
	if err != nil {
		return nil, b, err
	}
	if h.kind != kindStr && h.kind != kindBin {
		return nil, b, fmt.Errorf("msgpack: got %s, want str or bin", h.kind)
	}
	end := h.n + h.size
	if len(b) < end {
		return nil, b, ErrShort
	}
	return b[h.n:end], b[end:], nil
}

// Decode decodes the value at the start of b and returns it with the rest of b. Values become
// nil, bool, int64 (uint64 above math.MaxInt64), float64, string (str), []byte (bin),
// time.Time (EventTime), Ext (other extensions), []any and map[string]any; map keys must be str or
// bin. Nothing in the result aliases b.
func Decode(b []byte) (v any, rest []byte, err error) {
	v, n, err := decode(b, 0)
	if err != nil {
		return nil, b, err
	}
	return v, b[n:], nil
}

func decode(b []byte, depth int) (any, int, error) {
	h, err := readHeader(b)
	if err != nil {
		return nil, 0, err
	}
	pos := h.n
	if h.hasPayload() && len(b)-pos < h.size {
		return nil, 0, ErrShort
	}
	switch h.kind {
	case kindNil:
		return nil, pos, nil
	case kindBool:
		return h.bits == 1, pos, nil
	case kindInt:
		return int64(h.bits), pos, nil
	case kindUint:
		if h.bits > math.MaxInt64 {
			return h.bits, pos, nil
		}
		return int64(h.bits), pos, nil
	case kindFloat32:
		return float64(math.Float32frombits(uint32(h.bits))), pos, nil
	case kindFloat64:
		return math.Float64frombits(h.bits), pos, nil
	case kindStr:
		return string(b[pos : pos+h.size]), pos + h.size, nil
	case kindBin:
		return append([]byte{}, b[pos:pos+h.size]...), pos + h.size, nil
	case kindExt:
		data := b[pos : pos+h.size]
		if h.extType == EventTimeType {
			if len(data) != 8 {
				return nil, 0, fmt.Errorf("msgpack: EventTime of %d bytes, want 8", len(data))
			}
			sec, nsec := binary.BigEndian.Uint32(data), binary.BigEndian.Uint32(data[4:])
			return time.Unix(int64(sec), int64(nsec)), pos + h.size, nil
		}
		return Ext{Type: h.extType, Data: append([]byte{}, data...)}, pos + h.size, nil
	}
	if depth >= MaxDepth {
		return nil, 0, fmt.Errorf("msgpack: nested deeper than %d", MaxDepth)
	}
	// Every element takes at least one byte: a count beyond the data is short input, and must
	// not size an allocation.
	if h.size > len(b)-pos {
		return nil, 0, ErrShort
	}
	if h.kind == kindArray {
		a := make([]any, h.size)
		for i := range a {
			v, n, err := decode(b[pos:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			a[i] = v
			pos += n
		}
		return a, pos, nil
	}
	m := make(map[string]any, h.size)
	for range h.size {
		k, n, err := decode(b[pos:], depth+1)
		if err != nil {
			return nil, 0, err
		}
		var key string
		switch k := k.(type) {
		case string:
			key = k
		case []byte:
			key = string(k)
		default:
			return nil, 0, fmt.Errorf("msgpack: map key is a %T, want str or bin", k)
		}
		pos += n
		v, n, err := decode(b[pos:], depth+1)
		if err != nil {
			return nil, 0, err
		}
		m[key] = v
		pos += n
	}
	return m, pos, nil
}
