package parse

import (
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
)

func TestEventTimePresets(t *testing.T) {
	want := time.Date(2024, 5, 1, 12, 30, 45, 123456789, time.UTC)
	sec := time.Date(2024, 5, 1, 12, 30, 45, 0, time.UTC)
	for _, tt := range []struct {
		format, value string
		want          time.Time
	}{
		{config.TimeRFC3339, `"2024-05-01T12:30:45Z"`, sec},
		{config.TimeRFC3339, `"2024-05-01T12:30:45.123456789Z"`, want},
		{config.TimeRFC3339, `"2024-05-01T14:30:45.123456789+02:00"`, want},
		{config.TimeRFC3339, `"2024-05-01T09:00:45.123456789-03:30"`, want},
		{config.TimeRFC3339, `"2024-05-01 12:30:45.123456789z"`, want},
		{config.TimeRFC3339, `"2024-05-01T12:30:45.1234567891234Z"`, want},
		{config.TimeRFC3339Nano, `"2024-05-01T12:30:45.123456789Z"`, want},
		{config.TimeRFC3339Nano, `"2024-05-01T12:30:45.5Z"`, sec.Add(500 * time.Millisecond)},
		{config.TimeEpochSeconds, `1714566645`, sec},
		{config.TimeEpochSeconds, `1714566645.123456789`, want},
		{config.TimeEpochSeconds, `"1714566645.123456789"`, want},
		{config.TimeEpochSeconds, `1.714566645e9`, sec},
		{config.TimeEpochMillis, `1714566645123`, sec.Add(123 * time.Millisecond)},
		{config.TimeEpochMillis, `1714566645123.456789`, want},
		{config.TimeEpochMicros, `1714566645123456`, sec.Add(123456 * time.Microsecond)},
		{config.TimeEpochMicros, `"1714566645123456.789"`, want},
		{config.TimeEpochNanos, `1714566645123456789`, want},
		{"2006-01-02 15:04:05.000", `"2024-05-01 12:30:45.123"`, sec.Add(123 * time.Millisecond)},
		{"02/Jan/2006:15:04:05 -0700", `"01/May/2024:14:30:45 +0200"`, sec},
		{"01/02/2006 15:04:05", `"05\/01\/2024 12:30:45"`, sec}, // PHP escapes slashes
	} {
		t.Run(tt.format+" "+tt.value, func(t *testing.T) {
			f, err := NewTimeFormat(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			tr := Transcoder{TimeKey: "ts"}
			if _, err := tr.Scan([]byte(`{"msg":"x","ts":` + tt.value + `,"n":{"ts":1}}`)); err != nil {
				t.Fatal(err)
			}
			got, ok := tr.EventTime(f)
			if !ok || !got.Equal(tt.want) {
				t.Errorf("EventTime = %v, %v; want %v", got.UTC(), ok, tt.want)
			}
		})
	}
}

func TestEventTimeUnparsable(t *testing.T) {
	for _, tt := range []struct{ format, line string }{
		{config.TimeRFC3339, `{"ts":"yesterday"}`},
		{config.TimeRFC3339, `{"ts":"2024-05-01T12:30:45"}`}, // no zone
		{config.TimeRFC3339, `{"ts":"2024-02-30T12:30:45Z"}`},
		{config.TimeRFC3339, `{"ts":"2024-05-01T25:30:45Z"}`},
		{config.TimeRFC3339, `{"ts":1714566645}`},
		{config.TimeRFC3339, `{"ts":null}`},
		{config.TimeRFC3339, `{"ts":{"sec":1}}`},
		{config.TimeRFC3339, `{"time":"2024-05-01T12:30:45Z"}`},     // no such key
		{config.TimeRFC3339, `{"n":{"ts":"2024-05-01T12:30:45Z"}}`}, // nested: not top-level
		{config.TimeRFC3339, `{"ts":"1969-12-31T23:59:59Z"}`},       // before an EventTime can say
		{config.TimeEpochSeconds, `{"ts":"abc"}`},
		{config.TimeEpochSeconds, `{"ts":4294967296}`}, // past 2106
		{config.TimeEpochSeconds, `{"ts":-5}`},
		{config.TimeEpochSeconds, `{"ts":true}`},
		{config.TimeEpochMillis, `{"ts":"12.5.3"}`},
		{config.TimeEpochNanos, `{"ts":99999999999999999999999}`},
		{"2006-01-02 15:04:05", `{"ts":"2024-05-01T12:30:45Z"}`},
	} {
		t.Run(tt.format+" "+tt.line, func(t *testing.T) {
			f, err := NewTimeFormat(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			tr := Transcoder{TimeKey: "ts"}
			if _, err := tr.Scan([]byte(tt.line)); err != nil {
				t.Fatal(err)
			}
			if got, ok := tr.EventTime(f); ok {
				t.Errorf("EventTime = %v, true; want not ok", got)
			}
		})
	}
}

func TestEventTimeLastKeyWins(t *testing.T) {
	f, _ := NewTimeFormat(config.TimeEpochSeconds)
	tr := Transcoder{TimeKey: "ts"}
	if _, err := tr.Scan([]byte(`{"ts":1,"ts":2}`)); err != nil {
		t.Fatal(err)
	}
	if got, ok := tr.EventTime(f); !ok || got.Unix() != 2 {
		t.Errorf("EventTime = %v, %v; want 2 (the last, as encoding/json)", got.Unix(), ok)
	}
	// A failed scan leaves no time behind.
	if _, err := tr.Scan([]byte(`{"ts":3`)); err == nil {
		t.Fatal("bad line scanned")
	}
	if _, ok := tr.EventTime(f); ok {
		t.Error("EventTime after a failed Scan")
	}
}

func TestNewTimeFormatRefuses(t *testing.T) {
	for _, f := range []string{"", "iso", "15:04:05", "2006-01-02"} {
		if _, err := NewTimeFormat(f); err == nil {
			t.Errorf("NewTimeFormat(%q) accepted", f)
		}
	}
}

func TestEventTimeAllocs(t *testing.T) {
	for _, format := range []string{config.TimeRFC3339, config.TimeEpochMillis} {
		f, _ := NewTimeFormat(format)
		line := []byte(`{"level":"info","ts":"2024-05-01T14:30:45.123+02:00","msg":"hello"}`)
		if format == config.TimeEpochMillis {
			line = []byte(`{"level":"info","ts":1714566645123,"msg":"hello"}`)
		}
		var tr Transcoder
		tr.TimeKey = "ts"
		tr.Scan(line) // warm the scratch
		n := testing.AllocsPerRun(100, func() {
			if _, err := tr.Scan(line); err != nil {
				t.Fatal(err)
			}
			if _, ok := tr.EventTime(f); !ok {
				t.Fatal("no time")
			}
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per line, want 0", format, n)
		}
	}
}
