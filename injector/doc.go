// Package injector adds the sidelog agent to pods that ask for it. It is pure: no I/O, no
// clock, no client. Inject maps (pod, namespace annotations, cluster policy) to (mutated pod,
// outcome with warnings); the webhook and `sidelog inject` are thin layers around it.
//
// Annotations (annotations.go) say what to tail and how; a pod's win over its namespace's,
// which win over the Policy. The agent is added as a native sidecar (an init container with
// restartPolicy Always) or, in legacy mode, as a regular container, with:
//
//   - the app's log volumes mounted read-only at the same paths (subPath and subPathExpr kept),
//     so that the globs mean the same in both containers; a log path on no volume is refused,
//     or given an emptyDir if the policy says so (Policy.MissingVolume);
//   - a pod-local emptyDir for its checkpoints (StateVolume), the pod's labels from the
//     downward API (PodInfoVolume), and its identity in POD_NAME, POD_NAMESPACE, POD_UID and
//     NODE_NAME;
//   - no service-account token (NoTokenVolume);
//   - its configuration as one sidecar/config document in SIDELOG_CONFIG;
//   - non-root, read-only root file system, no privilege escalation, all capabilities dropped,
//     RuntimeDefault seccomp, and the policy's requests and limits.
//
// The pod is marked with AnnotationStatus; a pod that has it and the agent is left alone, so
// injecting twice changes nothing.
package injector
