package kojid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kib-project/kib/internal/aptroot"
	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/engine"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/store"
)

// ErrNoRepos is returned when a request names no repositories and the
// distro definition names no mirror for a suite.
var ErrNoRepos = errors.New("the Koji build tag's repositories are RPM repositories and cannot build a Debian image: " +
	"give the task repos (koji image-builder-build --repo URL) or use a distro definition that names its mirrors")

// EngineBuilder builds images with kib's engine on this host: one store
// shared by every task (sources and pipeline outputs are reused between
// types and tasks) and apt metadata cached in CacheDir.
type EngineBuilder struct {
	Store *store.Store
	// CacheDir holds apt metadata for resolving; required.
	CacheDir string
	// Definitions, if set, is a directory of distro definitions that
	// override the built-in ones.
	Definitions string
	// DefaultDistro is used when a task names none; empty means debian-12.
	DefaultDistro string
}

var _ Builder = (*EngineBuilder)(nil)

// Build resolves a manifest per type and builds it.
func (b *EngineBuilder) Build(ctx context.Context, req BuildRequest) ([]BuiltImage, error) {
	if b.Store == nil {
		return nil, errors.New("kojid: engine builder has no store")
	}
	cat, err := distro.Load(b.Definitions)
	if err != nil {
		return nil, err
	}
	name := req.Distro
	if name == "" {
		name = b.DefaultDistro
	}
	if name == "" {
		name = "debian-12"
	}
	def, err := cat.Get(name)
	if err != nil {
		return nil, fmt.Errorf("opts.distro: %w", err)
	}
	if _, err := def.DebArch(req.Arch); err != nil {
		return nil, fmt.Errorf("arch: %w", err)
	}
	for _, t := range req.Types {
		if _, err := def.ImageType(t); err != nil {
			return nil, fmt.Errorf("types: %w", err)
		}
	}
	repos, err := manifest.ResolveRepos(def, nil, req.Repos)
	if err != nil {
		return nil, fmt.Errorf("opts.repos: %w", err)
	}
	for _, r := range repos {
		if r.URL == "" {
			return nil, ErrNoRepos
		}
	}
	var bp *blueprint.Blueprint
	if req.Blueprint != nil {
		raw, err := json.Marshal(req.Blueprint)
		if err != nil {
			return nil, fmt.Errorf("opts.blueprint: %w", err)
		}
		if bp, err = blueprint.Parse(strings.NewReader(string(raw))); err != nil {
			return nil, fmt.Errorf("opts.blueprint: %w", err)
		}
	}
	solver := &depsolve.Solver{CacheDir: b.CacheDir, Log: req.ToolLog, Roots: &aptroot.Bootstrapper{Store: b.Store, Log: req.Log}}
	eng := &engine.Engine{Store: b.Store, Log: req.Log, ToolLog: req.ToolLog}
	var out []BuiltImage
	for _, t := range req.Types {
		req.Log.Info("resolving", "type", t, "distro", name, "arch", req.Arch)
		m, err := manifest.Generate(ctx, solver, manifest.Request{Distro: def, Arch: req.Arch, ImageType: t,
			Repos: repos, Blueprint: bp, Seed: req.Seed})
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", t, err)
		}
		dir := filepath.Join(req.OutputDir, t)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		arts, err := eng.Build(ctx, m, engine.Options{OutputDir: dir})
		if err != nil {
			return nil, err
		}
		for _, a := range arts {
			bi, err := buildinfo.Read(a.Info)
			if err != nil {
				return nil, err
			}
			im := BuiltImage{Path: a.Path, Manifest: a.Manifest, Info: bi}
			if a.SBOM != "" {
				im.SBOMs = []string{a.SBOM}
			}
			out = append(out, im)
		}
	}
	return out, nil
}
