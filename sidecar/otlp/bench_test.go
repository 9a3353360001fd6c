package otlp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/sidecar/config"
	"github.com/sidelog/sidelog/sidecar/otlp"
)

// BenchmarkEncoder measures appending one 200-byte line, and one JSON object line, as a
// LogRecord to a batch (compare record.BenchmarkEncoder for the forward entry).
func BenchmarkEncoder(b *testing.B) {
	for _, bb := range []struct{ name, parser, line string }{
		{"plain", config.ParserNone, strings.Repeat("0123456789", 20)},
		{"json", config.ParserJSON, `{"ts":"2026-11-30T10:00:00.123Z","level":"info","msg":"request done","status":200,"ms":12.5,"path":"/api/v1/orders/12345","user":"ann"}`},
	} {
		b.Run(bb.name, func(b *testing.B) {
			enc := otlp.NewEncoder("/var/log/app/app.log", bb.parser)
			line := []byte(bb.line)
			buf := make([]byte, 0, 1<<20)
			now := time.Now()
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if len(buf) > 1<<20-4096 {
					buf = buf[:0]
				}
				buf, _ = enc.Append(buf, now, line)
			}
		})
	}
}
