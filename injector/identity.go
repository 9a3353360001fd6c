package injector

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The agent's identity: which uid and gid it runs as (Policy.AgentIdentity), and whether that
// lets it read the files of the containers it tails.

// resolveIdentity sets r.uid and r.gid (nil: left to the platform) and warns when the injector
// cannot know that the agent runs as the uid that writes the tailed files.
func (r *request) resolveIdentity(pod *corev1.Pod, p *Policy) {
	var podUID, podGID *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		podUID, podGID = psc.RunAsUser, psc.RunAsGroup
	}
	// ids are the effective runAsUser (or runAsGroup) of each tailed container, nil when the
	// image decides.
	ids := func(get func(*corev1.SecurityContext) *int64, podLevel *int64) []*int64 {
		out := make([]*int64, len(r.inputs))
		for i, in := range r.inputs {
			out[i] = podLevel
			if sc := pod.Spec.Containers[in.container].SecurityContext; sc != nil && get(sc) != nil {
				out[i] = get(sc)
			}
		}
		return out
	}
	uids := ids(func(sc *corev1.SecurityContext) *int64 { return sc.RunAsUser }, podUID)
	gids := ids(func(sc *corev1.SecurityContext) *int64 { return sc.RunAsGroup }, podGID)
	appUID, uidShared := sharedID(uids)
	appGID, gidShared := sharedID(gids)

	switch {
	case p.AgentIdentity == IdentityFixed || !uidShared && p.AgentIdentity == IdentityApp:
		r.uid, r.gid = ptr(p.AgentUser), ptr(p.AgentGroup)
	case uidShared:
		r.uid, r.gid = ptr(appUID), nil
		if gidShared {
			r.gid = ptr(appGID)
		} else if p.AgentIdentity == IdentityApp {
			r.gid = ptr(p.AgentGroup)
		}
	default: // IdentityPlatform, no shared uid: the platform assigns one
		r.uid, r.gid = nil, nil
		if podUID != nil && *podUID == 0 {
			// Left unset, the agent would inherit the pod's root uid, which its runAsNonRoot
			// refuses: the kubelet would never start it, nor, behind a native sidecar, the app.
			r.uid = ptr(p.AgentUser)
		}
		if !anySet(uids) {
			// The platform gives the agent the uid it gives the app containers.
			return
		}
	}
	if r.uid != nil && uidShared && *r.uid == appUID {
		return
	}

	agent := "the platform's uid"
	if r.uid == nil && podUID != nil {
		agent = fmt.Sprintf("the pod's uid %d", *podUID)
	}
	if r.uid != nil {
		agent = fmt.Sprintf("uid %d", *r.uid)
	}
	var who []string
	for i, in := range r.inputs {
		name := pod.Spec.Containers[in.container].Name
		switch u := uids[i]; {
		case u == nil:
			who = append(who, fmt.Sprintf("%q as its image's user", name))
		case *u == 0:
			who = append(who, fmt.Sprintf("%q as root", name))
		case r.uid == nil || *u != *r.uid:
			who = append(who, fmt.Sprintf("%q as uid %d", name, *u))
		}
	}
	readable := "readable by all"
	if psc := pod.Spec.SecurityContext; psc != nil && psc.FSGroup != nil {
		readable += fmt.Sprintf(" or by group %d (the pod's fsGroup, which the agent has too)", *psc.FSGroup)
	}
	fix := "give the tailed containers one non-root runAsUser, and the agent runs as it"
	if p.AgentIdentity == IdentityFixed {
		fix = "make them readable to the agent's uid or group (or ask the cluster admin for agentIdentity: app in the sidelog policy)"
	}
	containers := "container"
	if len(who) > 1 {
		containers = "containers"
	}
	r.warnings = append(r.warnings, fmt.Sprintf("the agent runs as %s and tailed %s %s: the agent can read only the files that are %s; %s",
		agent, containers, strings.Join(who, ", "), readable, fix))
}

// sharedID returns the one non-root id that every entry of ids sets, if there is one.
func sharedID(ids []*int64) (int64, bool) {
	var id *int64
	for _, v := range ids {
		if v == nil || *v <= 0 || id != nil && *id != *v {
			return 0, false
		}
		id = v
	}
	if id == nil {
		return 0, false
	}
	return *id, true
}

func anySet(ids []*int64) bool {
	for _, v := range ids {
		if v != nil {
			return true
		}
	}
	return false
}
