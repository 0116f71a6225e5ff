//go:build chaos

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/jobs/jobstest"
	"github.com/kib-project/kib/internal/kojid"
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
	if err := chaosHostCommand(ctx, b.token); err != nil {
		return nil, err
	}
	return b.files.Build(ctx, a)
}

// chaosHostCommand runs the stand-in build step: a host command named by
// the token that runs for 0.2-1.5 s, or KIB_CHAOS_BUILD_TIME.
func chaosHostCommand(ctx context.Context, token string) error {
	d := 200*time.Millisecond + time.Duration(rand.Int64N(int64(1300*time.Millisecond)))
	if v, err := time.ParseDuration(os.Getenv("KIB_CHAOS_BUILD_TIME")); err == nil {
		d = v
	}
	_, err := hostcmd.Run(ctx, hostcmd.Cmd{Path: "sh", Args: []string{"-c", fmt.Sprintf("sleep %.3f & wait", d.Seconds()), token}})
	return err
}

// testKojidBuilder, in a kib built with the chaos tag, replaces kib
// kojid's image build with a fast stand-in when KIB_CHAOS_TOKEN is set: the
// same host command as testBuilder's, then a small tar image per type with
// its manifest, SBOM and build info.
func testKojidBuilder() kojid.Builder {
	tok := os.Getenv("KIB_CHAOS_TOKEN")
	if tok == "" {
		return nil
	}
	return chaosKojidBuilder{token: tok}
}

type chaosKojidBuilder struct{ token string }

func (b chaosKojidBuilder) Build(ctx context.Context, req kojid.BuildRequest) ([]kojid.BuiltImage, error) {
	fmt.Fprintf(req.ToolLog, "chaos stand-in build of %v for %s\n", req.Types, req.Arch)
	if err := chaosHostCommand(ctx, b.token); err != nil {
		return nil, err
	}
	var out []kojid.BuiltImage
	for _, typ := range req.Types {
		dir := filepath.Join(req.OutputDir, typ)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		img := filepath.Join(dir, "root.tar.xz")
		data := []byte(fmt.Sprintf("chaos image %s %s %v", typ, req.Arch, req.Repos))
		if err := os.WriteFile(img, data, 0o644); err != nil {
			return nil, err
		}
		for _, f := range []string{img + ".manifest.json", img + ".image-os.spdx.json"} {
			if err := os.WriteFile(f, []byte("{}"), 0o644); err != nil {
				return nil, err
			}
		}
		sum := sha256.Sum256(data)
		info := &buildinfo.BuildInfo{Arch: req.Arch, BootMode: "none", ExportName: "archive", ExportFilename: "root.tar.xz",
			SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Distro: "debian-12", ImageType: typ,
			Packages: []buildinfo.Package{{Name: "base-files", Version: "12.4+deb12u5", Arch: "amd64", SHA256: strings.Repeat("a", 64)}}}
		out = append(out, kojid.BuiltImage{Path: img, Manifest: img + ".manifest.json", SBOMs: []string{img + ".image-os.spdx.json"}, Info: info})
	}
	return out, nil
}
