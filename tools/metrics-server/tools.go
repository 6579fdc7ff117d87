//go:build tools

// Package tools pins metrics-server, which serves the real node's resource metrics to
// HorizontalPodAutoscalers; tools/build.sh builds it from this module.
package tools

import (
	_ "sigs.k8s.io/metrics-server/cmd/metrics-server"
)
