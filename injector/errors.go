package injector

import "fmt"

// Origin is where a setting came from.
type Origin int

// Origins, from the most to the least specific.
const (
	FromPod       Origin = iota // an annotation of the pod (or pod template)
	FromNamespace               // an annotation of the pod's namespace
	FromPolicy                  // a field of the cluster policy
)

// Error is a mistake in what a user wrote: an annotation of the pod or namespace, a field of
// the cluster policy, or a part of the pod spec that sidelog needs and cannot use. The
// webhook denies the pod with its message; `sidelog inject` prints it.
type Error struct {
	// Key is the annotation (sidelog.io/tail.app) or policy field (sidecarMode) at fault;
	// empty when the fault is in the pod spec and Message says where.
	Key string
	// Origin says whose Key it is.
	Origin Origin
	// Message says what is wrong and what was expected.
	Message string
}

func (e *Error) Error() string {
	switch {
	case e.Key == "":
		return e.Message
	case e.Origin == FromNamespace:
		return "namespace annotation " + e.Key + ": " + e.Message
	case e.Origin == FromPolicy:
		return "cluster policy field " + e.Key + ": " + e.Message
	default:
		return e.Key + ": " + e.Message
	}
}

func errorf(key string, from Origin, format string, args ...any) *Error {
	return &Error{Key: key, Origin: from, Message: fmt.Sprintf(format, args...)}
}

// describe names a setting for a message about another one: "sidelog.io/upstream",
// "namespace annotation sidelog.io/upstream", "cluster policy field upstream".
func describe(key string, from Origin) string {
	switch from {
	case FromNamespace:
		return "namespace annotation " + key
	case FromPolicy:
		return "cluster policy field " + key
	default:
		return key
	}
}
