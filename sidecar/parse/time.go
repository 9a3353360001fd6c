package parse

import (
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/sidelog/sidelog/sidecar/config"
)

// TimeFormat reads a record's event time from the raw JSON value of a field: one of the
// config.TimeFormats presets or a Go reference-time layout. It is immutable and may be shared.
//
// The presets parse without allocating: rfc3339 (and rfc3339nano, the same) by hand, the epoch
// presets as decimal numbers (a JSON number, or a string holding one) with the fraction kept to
// the nanosecond, which a float64 would round. A Go layout goes through time.Parse; a layout
// without a zone reads the time as UTC.
type TimeFormat struct {
	name   string
	unit   int64 // nanoseconds per unit of an epoch preset; 0 for a string format
	layout string
}

// NewTimeFormat returns the TimeFormat named f (config.CheckTimeFormat's rules).
func NewTimeFormat(f string) (*TimeFormat, error) {
	if err := config.CheckTimeFormat(f); err != nil {
		return nil, err
	}
	tf := &TimeFormat{name: f}
	switch f {
	case config.TimeRFC3339, config.TimeRFC3339Nano:
	case config.TimeEpochSeconds:
		tf.unit = 1e9
	case config.TimeEpochMillis:
		tf.unit = 1e6
	case config.TimeEpochMicros:
		tf.unit = 1e3
	case config.TimeEpochNanos:
		tf.unit = 1
	default:
		tf.layout = f
	}
	return tf, nil
}

// String returns the format's name.
func (f *TimeFormat) String() string { return f.name }

// The range of times a forward-protocol EventTime (unsigned 32-bit seconds) can carry: a time
// outside it is taken for a wrong value, not wrapped around.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(math.MaxUint32, 999_999_999)
)

// Parse reads the time in v, a JSON value (a string with its quotes and no escapes left, as
// TimeValue returns it, or a number); ok is false when v is not a time in this format or lies
// outside what an EventTime can carry (1970 to 2106).
func (f *TimeFormat) Parse(v []byte) (t time.Time, ok bool) {
	if len(v) == 0 {
		return time.Time{}, false
	}
	quoted := v[0] == '"'
	if quoted {
		if len(v) < 2 || v[len(v)-1] != '"' {
			return time.Time{}, false
		}
		v = v[1 : len(v)-1]
	}
	switch {
	case f.unit > 0:
		t, ok = epoch(v, f.unit)
	case !quoted:
		return time.Time{}, false // a number is no date string
	case f.layout == "":
		t, ok = rfc3339(v)
	default:
		var err error
		t, err = time.Parse(f.layout, unsafe.String(unsafe.SliceData(v), len(v)))
		ok = err == nil
	}
	if !ok || t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, false
	}
	return t, true
}

// epoch parses a decimal number of units (a fraction allowed) since the Unix epoch. An
// exponent goes through a float64, which rounds below the microsecond.
func epoch(v []byte, unit int64) (time.Time, bool) {
	i, neg := 0, false
	if i < len(v) && v[i] == '-' {
		neg, i = true, i+1
	}
	start := i
	var whole int64
	for ; i < len(v) && isDigit(v[i]); i++ {
		if whole > (math.MaxInt64-9)/10 {
			return time.Time{}, false
		}
		whole = whole*10 + int64(v[i]-'0')
	}
	if i == start {
		return time.Time{}, false
	}
	var frac, scale int64 = 0, 1
	if i < len(v) && v[i] == '.' {
		i++
		fs := i
		for ; i < len(v) && isDigit(v[i]); i++ {
			if scale < 1e9 { // digits beyond a nanosecond of a second are dropped
				frac, scale = frac*10+int64(v[i]-'0'), scale*10
			}
		}
		if i == fs {
			return time.Time{}, false
		}
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		x, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(v), len(v)), 64)
		if err != nil || math.IsInf(x*float64(unit), 0) || math.Abs(x*float64(unit)) > math.MaxInt64 {
			return time.Time{}, false
		}
		return time.Unix(0, int64(x*float64(unit))), true
	}
	if i != len(v) || whole > math.MaxInt64/unit {
		return time.Time{}, false
	}
	ns := whole*unit + frac*unit/scale
	if neg {
		ns = -ns
	}
	return time.Unix(0, ns), true
}

// rfc3339 parses an RFC 3339 date-time, 2006-01-02T15:04:05.999999999Z07:00, with any number
// of fraction digits (or none); 't' or a space may stand for the 'T', 'z' for the 'Z'. By hand
// because time.Parse allocates a zone for every offset other than the local one.
func rfc3339(v []byte) (time.Time, bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if !isDigit(c) {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if len(v) < len("2006-01-02T15:04:05Z") || v[4] != '-' || v[7] != '-' || v[13] != ':' || v[16] != ':' {
		return time.Time{}, false
	}
	if c := v[10]; c != 'T' && c != 't' && c != ' ' {
		return time.Time{}, false
	}
	year, ok1 := num(v[0:4])
	month, ok2 := num(v[5:7])
	day, ok3 := num(v[8:10])
	hour, ok4 := num(v[11:13])
	minute, ok5 := num(v[14:16])
	sec, ok6 := num(v[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	rest := v[19:]
	nsec := 0
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		i := 1
		scale := 100_000_000
		for ; i < len(rest) && isDigit(rest[i]); i++ {
			nsec += int(rest[i]-'0') * scale
			scale /= 10
		}
		if i == 1 {
			return time.Time{}, false
		}
		rest = rest[i:]
	}
	var offset int
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		h, okh := num(rest[1:3])
		m, okm := num(rest[4:6])
		if !okh || !okm || h > 23 || m > 59 {
			return time.Time{}, false
		}
		offset = (h*60 + m) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	if sec == 60 { // a leap second: time.Date normalises it to the next minute
		sec, nsec = 59, 999_999_999
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// TimeValue returns the raw JSON value (a string with its quotes, a number, ...) of the last
// top-level member named TimeKey of the line last scanned, and whether there was one. A string
// with escapes is returned unescaped, with its quotes, from scratch the Transcoder keeps. Valid
// until the next Scan.
func (t *Transcoder) TimeValue() ([]byte, bool) {
	if !t.scanned || t.timeEnd == 0 {
		return nil, false
	}
	v := t.line[t.timeStart:t.timeEnd]
	if len(v) > 1 && v[0] == '"' && t.timeEscaped {
		t.timeBuf = append(unquote(append(t.timeBuf[:0], '"'), v[1:len(v)-1]), '"')
		return t.timeBuf, true
	}
	return v, true
}

// EventTime returns the time that the line last scanned gives in its TimeKey member, read in
// format f: ok is false when the line has no such member or its value is not a time in f.
func (t *Transcoder) EventTime(f *TimeFormat) (ts time.Time, ok bool) {
	v, found := t.TimeValue()
	if !found {
		return time.Time{}, false
	}
	return f.Parse(v)
}
