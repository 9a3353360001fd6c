package webhook

import (
	"context"
	"strconv"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
)

// BenchmarkHandle is the handler's own cost for the pod of BenchmarkHandleTLS, without the
// server, TLS or the client: for the same pod again (answered from what the handler
// remembers), and for distinct pods (decoded, injected and the patch encoded every time).
//
//	go test -run '^$' -bench 'Handle$' -benchmem ./webhook
func BenchmarkHandle(b *testing.B) {
	namespaces := cachedNamespaces{"shop": namespace("shop", true, map[string]string{injector.AnnotationUpstream: "fluentd.logging:24224"})}
	ctx := context.Background()
	const distinct = 4096 // more than the handler remembers
	reqs := make([]admission.Request, distinct)
	for i := range reqs {
		pod := appPod(map[string]string{injector.AnnotationTail + ".app": "/var/log/app/*.log"})
		pod.Name += "-" + strconv.Itoa(i)
		reqs[i] = podRequest(b, "shop", admissionv1.Create, pod)
	}
	for _, bench := range []struct {
		name string
		n    int
	}{{"same", 1}, {"distinct", distinct}} {
		b.Run(bench.name, func(b *testing.B) {
			h := NewHandler(namespaces, StaticPolicy(injector.DefaultPolicy()), ownNS)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if resp := h.Handle(ctx, reqs[i%bench.n]); len(resp.Patch) == 0 {
					b.Fatalf("no patch: %+v", resp.Result)
				}
				i++
			}
		})
	}
}
