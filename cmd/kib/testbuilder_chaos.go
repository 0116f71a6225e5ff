//go:build chaos

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
)

// testBuilder, in a kib built with the chaos tag (only the chaos suite
// does), replaces the image build with a fast stand-in when
// KIB_CHAOS_TOKEN is set: a host command that runs for a while (0.2-1.5 s,
// or KIB_CHAOS_BUILD_TIME; named by the token, so the suite can find
// orphans), then jobstest.Builder's files.
func testBuilder() jobs.Builder {
	tok := os.Getenv("KIB_CHAOS_TOKEN")
	if tok == "" {
		return nil
	}
	return &chaosBuilder{token: tok}
}

type chaosBuilder struct {
	token string
	files jobstest.Builder
}

func (b *chaosBuilder) Build(ctx context.Context, a *jobs.BuildArgs) (*jobs.BuildResult, error) {
	d := 200*time.Millisecond + time.Duration(rand.Int64N(int64(1300*time.Millisecond)))
	if v, err := time.ParseDuration(os.Getenv("KIB_CHAOS_BUILD_TIME")); err == nil {
		d = v
	}
	if _, err := hostcmd.Run(ctx, hostcmd.Cmd{Path: "sh", Args: []string{"-c", fmt.Sprintf("sleep %.3f & wait", d.Seconds()), b.token}}); err != nil {
		return nil, err
	}
	return b.files.Build(ctx, a)
}
