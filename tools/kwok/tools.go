//go:build tools

// Package tools pins kwok and kwokctl, which tools/build.sh builds from this module.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
