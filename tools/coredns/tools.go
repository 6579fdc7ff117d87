//go:build tools

// Package tools pins CoreDNS, the real node's cluster DNS, which tools/build.sh builds
// from this module.
package tools

import (
	_ "github.com/coredns/coredns"
)
