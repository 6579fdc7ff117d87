//go:build tools

// Package tools pins Prometheus, the in-cluster Prometheus of manifests/ on the real
// node, which tools/build.sh builds from this module with only Kubernetes service
// discovery (build tags remove_all_sd,enable_kubernetes_sd).
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
