// Package e2e holds sidelog's tests against a real control plane: kube-apiserver and etcd
// started by controller-runtime's envtest from the binaries in $KUBEBUILDER_ASSETS (built by
// ../../shared/k8s-tools/install.sh). It is its own module so that the tests' dependencies stay
// out of the product's go.mod.
//
//	KUBEBUILDER_ASSETS="$(../../shared/k8s-tools/install.sh)" go test ./...
//
// Without KUBEBUILDER_ASSETS every test is skipped with a message saying so.
package e2e
