package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The webhook's metrics, served with controller-runtime's on --metrics-addr.
var (
	admissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidelog_webhook_admissions_total",
		Help: "Pod admission requests answered, by outcome: injected, removed (an injected pod opted out), skipped, refused (denied: the annotations are wrong) or error.",
	}, []string{"outcome"})

	admissionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sidelog_webhook_admission_duration_seconds",
		Help: "Time to answer a pod admission request, from the decoded request to the response, by outcome.",
		// The API server's default webhook timeout is 10s; answers take well under 10ms.
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
	}, []string{"outcome"})

	workloadChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidelog_webhook_workload_checks_total",
		Help: "Workload pod templates checked at create or update, by outcome: skipped (admitted, with the injector's warnings if any), refused or error (admitted with a warning).",
	}, []string{"outcome"})

	workloadSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sidelog_webhook_workload_check_duration_seconds",
		Help:    "Time to answer a workload admission request.",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
	})

	ownerLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidelog_webhook_owner_lookups_total",
		Help: "Lookups of the owner of an injected pod's ReplicaSet or Job, by result: cached, live (read from the API server: the cache had not seen it yet) or failed (admitted without the workload, with a warning).",
	}, []string{"result"})

	rememberedAnswers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sidelog_webhook_remembered_answers_total",
		Help: "Pod admission requests answered from a remembered answer: a pod the same as one answered before but for its managedFields (a ReplicaSet's or a Job's next pod), not injected anew.",
	})

	policyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidelog_webhook_policy_reloads_total",
		Help: "Reloads of the --policy file after it changed, by result: applied, or rejected (the previous policy stays).",
	}, []string{"result"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(admissions, admissionSeconds, workloadChecks, workloadSeconds, ownerLookups, rememberedAnswers, policyReloads)
	// Every series exists from the start, so that rate() and alerts see a zero, not nothing.
	for _, o := range []string{OutcomeInjected, OutcomeRemoved, OutcomeSkipped, OutcomeRefused, OutcomeError} {
		admissions.WithLabelValues(o)
	}
	for _, o := range []string{OutcomeSkipped, OutcomeRefused, OutcomeError} {
		workloadChecks.WithLabelValues(o)
	}
	for _, r := range []string{lookupCached, lookupLive, lookupFailed} {
		ownerLookups.WithLabelValues(r)
	}
	for _, r := range []string{"applied", "rejected"} {
		policyReloads.WithLabelValues(r)
	}
}

func observe(outcome string, d time.Duration) {
	admissions.WithLabelValues(outcome).Inc()
	admissionSeconds.WithLabelValues(outcome).Observe(d.Seconds())
}
