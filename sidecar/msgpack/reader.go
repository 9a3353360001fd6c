package msgpack

import (
	"errors"
	"fmt"
	"io"
)

// Reader reads whole values from a stream, such as the messages of a forward-protocol
// connection.
type Reader struct {
	r   io.Reader
	max int
	// buf[off:] holds the bytes read but not yet returned.
	buf []byte
	off int
	// scanned and pending are where the scan of the value at off stopped for want of data.
	scanned, pending int
}

// NewReader returns a Reader of r that refuses values longer than max bytes, so that a corrupt
// length cannot make it buffer without bound.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: r, max: max}
}

// Raw returns the bytes of the next value. They are valid until the next call. At the end of the
// stream it returns io.EOF, or io.ErrUnexpectedEOF if the stream ends inside a value.
func (r *Reader) Raw() ([]byte, error) {
	for {
		if r.pending == 0 {
			r.scanned, r.pending = 0, 1
		}
		n, pending, need, err := scan(r.buf[r.off:], r.scanned, r.pending)
		r.scanned, r.pending = n, pending
		if err == nil {
			v := r.buf[r.off : r.off+n]
			r.off += n
			return v, nil
		}
		if !errors.Is(err, ErrShort) {
			return nil, err
		}
		if need > r.max {
			return nil, fmt.Errorf("msgpack: value of at least %d bytes is over the limit of %d", need, r.max)
		}
		if err := r.fill(need); err != nil {
			return nil, err
		}
	}
}

// Decode reads the next value and decodes it as the package's Decode does.
func (r *Reader) Decode() (any, error) {
	raw, err := r.Raw()
	if err != nil {
		return nil, err
	}
	v, _, err := Decode(raw)
	return v, err
}

// fill reads until at least need bytes are buffered, or at least one more byte when need is
// already buffered (the need of a nested value is only a lower bound).
func (r *Reader) fill(need int) error {
	unread := len(r.buf) - r.off
	if r.off > 0 {
		copy(r.buf, r.buf[r.off:])
		r.buf = r.buf[:unread]
		r.off = 0
	}
	want := max(need, unread+1)
	if cap(r.buf) < want {
		grown := make([]byte, unread, max(want, 2*cap(r.buf), 4096))
		copy(grown, r.buf)
		r.buf = grown
	}
	for len(r.buf) < want {
		n, err := r.r.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		if err != nil {
			if len(r.buf) >= want {
				return nil
			}
			if errors.Is(err, io.EOF) && len(r.buf) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
