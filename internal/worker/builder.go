// Package worker runs compose jobs: the engine-backed image builder used by
// in-process and remote workers.
package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/kib-project/kib/internal/aptroot"
	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/engine"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/resolve"
	"github.com/kib-project/kib/internal/store"
)

// EngineBuilder builds images with kib's engine: it resolves a pinned
// manifest from the request and executes it.
type EngineBuilder struct {
	// Distros is the catalog of distro definitions.
	Distros *distro.Catalog
	// Store is the engine's content-addressed cache.
	Store *store.Store
	// CacheDir keeps apt's metadata between builds, and the keyrings of
	// requests' repositories.
	CacheDir string
	// FileRoots are the directories file: repositories may be under
	// (resolve.Resolver.FileRoots); AnyFile allows them all (a remote
	// worker trusts its server, which checked the request).
	FileRoots []string
	AnyFile   bool
}

// Request maps a build job to the resolver's request: the one place where
// the compose service's image request becomes kib's.
func Request(a *jobs.BuildArgs) (*resolve.Request, error) {
	seed := a.Seed
	req := &resolve.Request{Distro: a.Distribution, Arch: a.Image.Arch, ImageType: a.Image.ImageType, Seed: &seed}
	if a.Image.Size > 0 {
		if a.Image.Size > math.MaxInt64 {
			return nil, fmt.Errorf("size: %d bytes is too large", a.Image.Size)
		}
		n := int64(a.Image.Size)
		req.Size = &n
	}
	if len(a.Image.Blueprint) > 0 {
		bp, err := blueprint.Parse(bytes.NewReader(a.Image.Blueprint))
		if err != nil {
			return nil, fmt.Errorf("customizations: %w", err)
		}
		req.Blueprint = bp
	}
	for _, r := range a.Image.Repositories {
		req.Repositories = append(req.Repositories, RepositoryOf(r))
	}
	return req, nil
}

// RepositoryOf maps a compose repository to the resolver's.
func RepositoryOf(r jobs.Repository) resolve.Repository {
	return resolve.Repository{Source: r.BaseURL, GPGKey: r.GPGKey, CheckGPG: r.CheckGPG, PackageSets: r.PackageSets}
}

var _ jobs.Builder = (*EngineBuilder)(nil)

// syncBuffer is a log buffer the engine's tools may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Build implements jobs.Builder.
func (b *EngineBuilder) Build(ctx context.Context, a *jobs.BuildArgs) (*jobs.BuildResult, error) {
	req, err := Request(a)
	if err != nil {
		return nil, err
	}
	logBuf := &syncBuffer{}
	// The engine's log goes with the job's result, not to the service log.
	log := slog.New(slog.NewTextHandler(logBuf, nil)).With("job", a.JobID)
	rs := &resolve.Resolver{
		Distros: b.Distros, Solver: &depsolve.Solver{CacheDir: b.CacheDir, Log: logBuf, Roots: &aptroot.Bootstrapper{Store: b.Store, Log: log}},
		HostRoot: "/", KeyDir: filepath.Join(b.CacheDir, "keyrings"), FileRoots: b.FileRoots, AnyFile: b.AnyFile,
	}
	m, err := rs.Manifest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("generating manifest: %w", err)
	}
	man, err := m.Canonical()
	if err != nil {
		return nil, err
	}
	eng := &engine.Engine{Store: b.Store, Log: log, ToolLog: logBuf}
	arts, err := eng.Build(ctx, m, engine.Options{OutputDir: a.OutputDir, Exports: []string{a.Image.Export}})
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, tail(logBuf.String(), 4000))
	}
	res := &jobs.BuildResult{Manifest: man, Log: logBuf.String()}
	for _, art := range arts {
		// Flatten DIR/<export>/<file> into the job's artifact directory.
		for _, f := range []struct{ kind, path string }{{"image", art.Path}, {"manifest", art.Manifest}, {"sbom", art.SBOM}, {"info", art.Info}} {
			if f.path == "" {
				continue
			}
			a2, err := moveArtifact(f.kind, f.path, a.OutputDir)
			if err != nil {
				return nil, err
			}
			res.Artifacts = append(res.Artifacts, a2)
		}
	}
	logName := a.Image.Filename + ".build.log"
	if err := os.WriteFile(filepath.Join(a.OutputDir, logName), []byte(res.Log), 0o644); err != nil {
		return nil, err
	}
	la, err := jobsArtifact("log", filepath.Join(a.OutputDir, logName))
	if err != nil {
		return nil, err
	}
	res.Artifacts = append(res.Artifacts, la)
	return res, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func moveArtifact(kind, path, dir string) (jobs.Artifact, error) {
	dst := filepath.Join(dir, filepath.Base(path))
	if dst != path {
		if err := os.Rename(path, dst); err != nil {
			return jobs.Artifact{}, fmt.Errorf("moving artifact: %w", err)
		}
	}
	return jobsArtifact(kind, dst)
}

func jobsArtifact(kind, path string) (jobs.Artifact, error) {
	sum, size, err := sha256File(path)
	if err != nil {
		return jobs.Artifact{}, err
	}
	return jobs.Artifact{Kind: kind, Name: filepath.Base(path), Path: path, SHA256: sum, Size: size}, nil
}
