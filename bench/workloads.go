//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sidelog/sidelog/sidecar/config"
)

// workload is one kind of log: how its file is written, how the agent and Fluent Bit are told
// to read it, and how many records it makes.
type workload struct {
	name  string
	title string
	// input is the agent's input for logDir.
	input func(logDir string) config.Input
	// fluentBit is what goes into Fluent Bit's [INPUT] tail section after its path, and the
	// parsers file it needs ("" for none).
	fluentBit, parsers string
	// write writes a file of about lines lines and returns its lines and the records the agent
	// makes of them (a stack trace is one record).
	write func(path string, lines int) (fileLines, records int, err error)
}

var workloads = []workload{
	{
		name: "single", title: "single lines (200 B)",
		input: func(dir string) config.Input {
			return config.Input{Container: "app", Paths: []string{dir + "/*.log"}}
		},
		write: func(path string, lines int) (int, int, error) {
			return lines, lines, writeChunks(path, lines, func(b []byte, i, n int) ([]byte, int) { return appendLines(b, i, n), n })
		},
	},
	{
		name: "java", title: "Java: stack traces between lines",
		input: func(dir string) config.Input {
			return config.Input{Container: "app", Paths: []string{dir + "/*.log"}, Multiline: &config.Multiline{Preset: "java"}}
		},
		fluentBit: "multiline.parser java\n",
		write:     writeJava,
	},
	{
		name: "json", title: "JSON: 15 fields, nested (~510 B)",
		input: func(dir string) config.Input {
			return config.Input{Container: "app", Paths: []string{dir + "/*.log"}, Parser: config.ParserJSON,
				TimeKey: "time", TimeFormat: config.TimeRFC3339}
		},
		// As a Fluent Bit user would: the json parser, the time from "time", kept in the record
		// as sidelog keeps it.
		fluentBit: "parser json_app\n",
		parsers: "[PARSER]\n    name json_app\n    format json\n    time_key time\n" +
			"    time_format %Y-%m-%dT%H:%M:%S.%LZ\n    time_keep on\n",
		write: func(path string, lines int) (int, int, error) {
			return lines, lines, writeChunks(path, lines, func(b []byte, i, n int) ([]byte, int) { return appendJSON(b, i, n), n })
		},
	},
}

// workloadNamed returns the workloads named in a comma-separated list.
func workloadsNamed(list string) ([]workload, error) {
	var out []workload
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, w := range workloads {
			if w.name == name {
				out, found = append(out, w), true
			}
		}
		if !found {
			return nil, fmt.Errorf("--workloads: unknown workload %q, want single, java or json", name)
		}
	}
	return out, nil
}

// writeChunks writes lines lines to path, made by gen in chunks; gen returns the lines it made.
func writeChunks(path string, lines int, gen func(b []byte, first, n int) ([]byte, int)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	const per = 20_000
	var buf []byte
	for i := 0; i < lines; {
		var n int
		buf, n = gen(buf[:0], i, min(per, lines-i))
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
		i += n
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// javaFrames are the frames of a Spring web application's stack, deepest first: 50 frames, of
// which a trace shows the first traceFrames, then a "Caused by:" with causeFrames more.
var javaFrames = func() []string {
	classes := []string{
		"com.example.shop.payment.CardGateway.charge(CardGateway.java:%d)",
		"com.example.shop.payment.PaymentService.pay(PaymentService.java:%d)",
		"com.example.shop.checkout.CheckoutService.complete(CheckoutService.java:%d)",
		"com.example.shop.checkout.CheckoutController.post(CheckoutController.java:%d)",
		"java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:%d)",
		"java.base/java.lang.reflect.Method.invoke(Method.java:%d)",
		"org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:%d)",
		"org.springframework.web.servlet.mvc.method.annotation.ServletInvocableHandlerMethod.invokeAndHandle(ServletInvocableHandlerMethod.java:%d)",
		"org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:%d)",
		"org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:%d)",
		"jakarta.servlet.http.HttpServlet.service(HttpServlet.java:%d)",
		"org.apache.catalina.core.ApplicationFilterChain.internalDoFilter(ApplicationFilterChain.java:%d)",
		"org.springframework.web.filter.OncePerRequestFilter.doFilter(OncePerRequestFilter.java:%d)",
		"org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:%d)",
		"org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:%d)",
		"org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:%d)",
		"java.base/java.lang.Thread.run(Thread.java:%d)",
	}
	var out []string
	for i := range 50 {
		out = append(out, "\tat "+fmt.Sprintf(classes[i%len(classes)], 40+i*7))
	}
	return out
}()

const (
	traceEvery  = 10 // one record in traceEvery is an error with a stack trace
	traceFrames = 32
	causeFrames = 12
)

// writeJava writes about lines lines: plain lines as in the single-line file, and every
// traceEvery-th record an ERROR line followed by an exception, traceFrames frames, a cause
// with causeFrames frames and "... N more" (48 lines in all), the depth of a Spring service's
// trace.
func writeJava(path string, lines int) (int, int, error) {
	total, records := 0, 0
	err := writeChunks(path, lines, func(b []byte, first, n int) ([]byte, int) {
		made := 0
		for made < n {
			if records%traceEvery == traceEvery-1 {
				b = append(b, "2026-11-25T08:22:04.311Z ERROR [http-nio-8080-exec-4] com.example.shop.checkout.CheckoutController - checkout "...)
				b = strconv.AppendInt(b, int64(records), 10)
				b = append(b, " failed\ncom.example.shop.payment.PaymentDeclinedException: card declined by issuer (code 51)\n"...)
				for _, f := range javaFrames[:traceFrames] {
					b = append(append(b, f...), '\n')
				}
				b = append(b, "Caused by: java.net.SocketTimeoutException: Read timed out\n"...)
				for _, f := range javaFrames[:causeFrames] {
					b = append(append(b, f...), '\n')
				}
				b = append(b, "\t... 38 more\n"...)
				made += 3 + traceFrames + causeFrames + 1
			} else {
				b = appendLines(b, first+made, 1)
				made++
			}
			records++
		}
		total += made
		return b, made
	})
	return total, records, err
}

// appendJSON appends n JSON lines of 15 top-level fields, three of them objects, numbered from
// first, as a structured logger (logback's JSON encoder, zap) writes them.
func appendJSON(b []byte, first, n int) []byte {
	levels := []string{"info", "info", "info", "debug", "warn", "error"}
	for i := first; i < first+n; i++ {
		b = append(b, `{"time":"2026-11-25T08:22:04.`...)
		b = strconv.AppendInt(b, int64(100+i%900), 10)
		b = append(b, `Z","level":"`...)
		b = append(b, levels[i%len(levels)]...)
		b = append(b, `","logger":"com.example.shop.checkout.CheckoutController","thread":"http-nio-8080-exec-`...)
		b = strconv.AppendInt(b, int64(i%16), 10)
		b = append(b, `","msg":"request served","seq":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","http":{"method":"POST","path":"/cart/checkout","status":200,"duration_ms":3.25},"user":{"id":`...)
		b = strconv.AppendInt(b, int64(4711+i%1000), 10)
		b = append(b, `,"tier":"gold","country":"DE"},"cart":{"items":3,"total":129.95,"currency":"EUR"},"region":"eu-west-1","cache_hit":false,"attempt":1,"tags":["web","checkout"]}`+"\n"...)
	}
	return b
}
