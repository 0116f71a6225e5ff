//go:build !chaos

package main

import (
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/kojid"
)

// testBuilder returns the stand-in builder of a kib built with the chaos
// tag (see testbuilder_chaos.go); nil in a real kib.
func testBuilder() jobs.Builder { return nil }

// testKojidBuilder returns the stand-in image builder of kib kojid built
// with the chaos tag (see testbuilder_chaos.go); nil in a real kib.
func testKojidBuilder() kojid.Builder { return nil }
