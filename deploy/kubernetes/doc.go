// Package kubernetes holds Berth's Kubernetes manifests: a kustomize base and
// the overlays single-node and ha. Its tests render every overlay and decode
// each object strictly into its Kubernetes API type. It is a module of its
// own, so that the kustomize and Kubernetes libraries stay out of Berth's.
package kubernetes
