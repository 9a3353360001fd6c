package webhook

import (
	"bytes"
	"hash/maphash"
	"maps"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidelog/sidelog/injector"
)

// answers remembers the webhook's last answers to pods, so that a pod the webhook has just
// answered is answered again without decoding it, injecting and encoding the patch anew.
//
// Most pods are made by controllers from a template, and a controller's pods reach the webhook
// the same but for the time in their managedFields: a ReplicaSet's or a Job's pods have a
// generateName, not yet a name, and the same labels, owner and spec. A Deployment scaled up, a
// rollout or a Job with parallelism sends a burst of such pods, which is when admission latency
// matters. Pods that differ in any other byte (a StatefulSet's, a DaemonSet's, bare pods) are
// answered as before.
//
// An answer is a pure function of what it is kept with: the pod's JSON as the API server sent
// it but for metadata.managedFields (podKey: the API server stamps them with the second, and
// nothing sidelog does reads them), its namespace's name, annotations and labels (the agent is
// told them), the cluster policy (the same *Policy until a reload replaces it), and the
// generation of the owners' cache (OwnerResolver.Generation: a ReplicaSet adopted by another
// Deployment has the same pods). Each is compared whole on a hit; the hash only finds the
// candidate. Only answers are kept, never errors, and the whole is bounded in bytes.
type answers struct {
	seed maphash.Seed

	mu      sync.Mutex
	entries map[uint64]*answer
	order   []uint64 // hashes in the order they were added, for eviction (oldest first)
	bytes   int      // the sum of the entries' sizes
	max     int      // the bound of bytes
}

// answer is one remembered answer and what it was computed from.
type answer struct {
	key       []byte // the pod's JSON without its managedFields (podKey)
	namespace string
	defaults  map[string]string // the namespace's annotations
	labels    map[string]string // the namespace's labels
	policy    *injector.Policy
	owners    uint64 // OwnerResolver.Generation
	resp      admission.Response
	outcome   string
}

// answersMaxBytes bounds the memory that remembered answers take: a few hundred pods and their
// patches, enough for the bursts of the few templates being rolled out at one time.
const answersMaxBytes = 4 << 20

// answerMaxBytes leaves out of the cache a pod so large that it would crowd out the others.
const answerMaxBytes = 64 << 10

func newAnswers(maxBytes int) *answers {
	return &answers{seed: maphash.MakeSeed(), entries: map[uint64]*answer{}, max: maxBytes}
}

// get returns a copy of the answer remembered for this pod, namespace, policy and owners'
// generation.
func (c *answers) get(raw []byte, namespace string, defaults, labels map[string]string, p *injector.Policy, owners uint64) (admission.Response, string, bool) {
	head, tail := podKey(raw)
	h := c.hash(head, tail)
	c.mu.Lock()
	a, ok := c.entries[h]
	c.mu.Unlock()
	if !ok || a.policy != p || a.owners != owners || a.namespace != namespace || !maps.Equal(a.defaults, defaults) || !maps.Equal(a.labels, labels) ||
		len(a.key) != len(head)+len(tail) || !bytes.Equal(a.key[:len(head)], head) || !bytes.Equal(a.key[len(head):], tail) {
		return admission.Response{}, "", false
	}
	rememberedAnswers.Inc()
	return a.copyResponse(), a.outcome, true
}

// put remembers resp, the answer for this pod, namespace, policy and owners' generation. It keeps raw
// (or its key, without managedFields) and resp.Patch, which no one may change afterwards: the request's object is the admission
// package's copy of the body, made for this request, and the patch is encoded for this answer
// and only read when it is sent.
func (c *answers) put(raw []byte, namespace string, defaults, labels map[string]string, p *injector.Policy, owners uint64, resp admission.Response, outcome string) {
	head, tail := podKey(raw)
	key := raw
	if tail != nil {
		key = slices.Concat(head, tail)
	}
	a := &answer{key: key, namespace: namespace, defaults: maps.Clone(defaults), labels: maps.Clone(labels), policy: p, owners: owners, outcome: outcome}
	a.resp = resp
	a.resp.Result = cloneStatus(resp.Result)
	a.resp.Warnings = slices.Clone(resp.Warnings)
	size := a.size()
	if size > answerMaxBytes || size > c.max {
		return
	}
	h := c.hash(head, tail)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[h]; ok {
		// The same pod again (answered twice at once), or a collision: the newer wins.
		c.bytes -= old.size()
		c.order = slices.DeleteFunc(c.order, func(x uint64) bool { return x == h })
	}
	for c.bytes+size > c.max && len(c.order) > 0 {
		oldest := c.order[0]
		c.order = c.order[1:]
		c.bytes -= c.entries[oldest].size()
		delete(c.entries, oldest)
	}
	c.entries[h] = a
	c.order = append(c.order, h)
	c.bytes += size
}

func (c *answers) hash(head, tail []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.Write(head)
	h.Write(tail)
	return h.Sum64()
}

// size is about what a holds in memory.
func (a *answer) size() int {
	n := len(a.key) + len(a.namespace) + len(a.resp.Patch) + 512
	for _, m := range []map[string]string{a.defaults, a.labels} {
		for k, v := range m {
			n += len(k) + len(v)
		}
	}
	for _, w := range a.resp.Warnings {
		n += len(w)
	}
	if a.resp.Result != nil {
		n += len(a.resp.Result.Message)
	}
	return n
}

// copyResponse returns a's response with its own Result and Warnings, which the admission
// package completes and the server may change; the patch is shared, and only read.
func (a *answer) copyResponse() admission.Response {
	r := a.resp
	r.Result = cloneStatus(a.resp.Result)
	r.Warnings = slices.Clone(a.resp.Warnings)
	return r
}

func cloneStatus(s *metav1.Status) *metav1.Status {
	if s == nil {
		return nil
	}
	return s.DeepCopy()
}
