package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sidelog/sidelog/certs"
	"github.com/sidelog/sidelog/webhook"
)

// Values of --cert-mode.
const (
	certModeExternal    = "external"
	certModeSelfManaged = "self-managed"
)

func runWebhook(args []string) error {
	fs := flag.NewFlagSet("sidelog webhook", flag.ContinueOnError)
	var o webhook.Options
	fs.StringVar(&o.Host, "host", "", "address to serve the webhook on (default all)")
	fs.IntVar(&o.Port, "port", 9443, "port to serve the webhook on, over TLS")
	fs.StringVar(&o.CertDir, "cert-dir", "/var/run/sidelog/certs", "directory of tls.crt and tls.key, reloaded when they change")
	fs.StringVar(&o.HealthAddr, "health-addr", ":8081", `address of /healthz and /readyz ("0" disables)`)
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":8080", `address of the Prometheus /metrics ("0" disables)`)
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", false, "serve /metrics over HTTPS to callers the API server authenticates and authorises for GET /metrics (TokenReview, SubjectAccessReview); without it, listen on localhost only")
	fs.StringVar(&o.PolicyFile, "policy", "", "cluster policy, a YAML file, reloaded when it changes (default: the built-in policy)")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the webhook's own namespace, whose pods are never changed (default $POD_NAMESPACE)")
	failurePolicy := fs.String("failure-policy", "Fail", `the failurePolicy of the webhook configuration: "Fail" refuses a pod the webhook cannot decide on (an internal error), "Ignore" admits it unchanged with a warning`)
	ownerLookup := fs.Bool("owner-lookup", true, "name an injected pod's Deployment, CronJob or Argo Rollout in its records, from a cache of the metadata of ReplicaSets and Jobs (RBAC: get, list, watch); false names the pod's own controller only")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", 5*time.Second, "on SIGTERM, how long to go on serving with /readyz failing before the server stops, so that no request is sent to a stopped replica")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster, then ~/.kube/config)")
	verbosity := fs.Int("v", 0, "log verbosity: 1 logs every admission")

	certMode := fs.String("cert-mode", certModeExternal, `"external": --cert-dir is filled by cert-manager or another tool; `+
		`"self-managed": the webhook makes a CA and serving certificate, keeps them in --secret-name, writes them to --cert-dir `+
		`and patches the caBundle of --webhook-config-name`)
	var co certs.Options
	fs.StringVar(&co.SecretName, "secret-name", "sidelog-webhook-tls", "self-managed: the Secret, in --namespace, that holds the CA and the serving certificate")
	fs.StringVar(&co.WebhookConfigName, "webhook-config-name", "sidelog", "self-managed: the MutatingWebhookConfiguration whose caBundle is kept in step")
	service := fs.String("service-name", "sidelog-webhook", "self-managed: the webhook's Service, whose DNS names the serving certificate carries")
	clusterDomain := fs.String("cluster-domain", "cluster.local", "self-managed: the cluster's DNS domain")
	var certHosts []string
	fs.Func("cert-host", "self-managed: one more DNS name or IP address for the serving certificate, such as the host of a webhook URL (repeatable)", func(h string) error {
		if h == "" {
			return errors.New("empty host")
		}
		certHosts = append(certHosts, h)
		return nil
	})
	fs.DurationVar(&co.CALifetime, "ca-lifetime", 365*24*time.Hour, "self-managed: validity of the CA; it is replaced a third of it before expiry")
	fs.DurationVar(&co.ServingLifetime, "cert-lifetime", 30*24*time.Hour, "self-managed: validity of the serving certificate; it is renewed a third of it before expiry")

	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: sidelog webhook [flags]\n\n"+
			"Serves the mutating admission webhook that adds the log agent to pods (POST "+webhook.Path+").\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if o.Namespace == "" {
		return usageError{errors.New("--namespace is required when POD_NAMESPACE is unset")}
	}
	o.NoOwnerLookup = !*ownerLookup
	switch admissionregistrationv1.FailurePolicyType(*failurePolicy) {
	case admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
		o.FailurePolicy = admissionregistrationv1.FailurePolicyType(*failurePolicy)
	default:
		return usageError{fmt.Errorf("--failure-policy: want %q or %q, got %q", admissionregistrationv1.Fail, admissionregistrationv1.Ignore, *failurePolicy)}
	}
	switch *certMode {
	case certModeExternal:
	case certModeSelfManaged:
		co.Namespace = o.Namespace
		co.Hosts = append(certs.ServiceHosts(*service, o.Namespace, *clusterDomain), certHosts...)
		o.Certs = &co
	default:
		return usageError{fmt.Errorf("--cert-mode: want %q or %q, got %q", certModeExternal, certModeSelfManaged, *certMode)}
	}

	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-*verbosity)}))
	ctrllog.SetLogger(log)
	o.Log = log

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the Kubernetes client configuration: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return webhook.Run(ctx, cfg, o)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return config.GetConfig()
}
