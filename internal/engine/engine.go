// Package engine executes manifests: it fetches the pinned sources in
// parallel into the store, verifying each, runs the pipelines that the store
// does not already hold, and exports the results with their manifest, SBOM
// and build information.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/kib-project/kib/internal/engine/stages"
	"github.com/kib-project/kib/internal/fetch"
	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/store"
	"github.com/kib-project/kib/internal/version"
)

// Engine runs manifests. Set Store; the other fields have defaults.
type Engine struct {
	Store *store.Store
	// HTTPClient fetches sources; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Log receives structured progress; nil discards it.
	Log *slog.Logger
	// ToolLog receives the host tools' own output; nil discards it.
	ToolLog io.Writer
	// Progress, if set, is told what the engine is doing.
	Progress Progress
	// FetchParallel bounds concurrent downloads; 0 means 8.
	FetchParallel int
}

// Progress is told about the phases of a build. Implementations must be safe
// for concurrent use.
type Progress interface {
	// Step reports that step (1-based) of total, named name, has started.
	Step(step, total int, name string)
	// Bytes reports fetch progress: done of total bytes.
	Bytes(done, total int64)
}

// Options choose what Build produces.
type Options struct {
	// OutputDir receives DIR/<export>/<file> and its metadata files.
	OutputDir string
	// Exports are the exports to produce; empty means all.
	Exports []string
}

// Artifact is one exported image and the files beside it.
type Artifact struct {
	Export   manifest.Export
	Path     string
	SHA256   string
	Size     int64
	Manifest string
	SBOM     string
	Info     string
	// Cached reports that the image came from the store without running a
	// pipeline.
	Cached bool
}

func (e *Engine) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Keys returns the store key of each pipeline: the hash of the pipeline, of
// everything before it, and of the engine that runs it.
func Keys(m *manifest.Manifest) ([]string, error) {
	head := struct {
		Engine  string           `json:"engine"`
		Distro  string           `json:"distro"`
		Arch    string           `json:"deb_arch"`
		Seed    int64            `json:"seed"`
		SDE     int64            `json:"source_date_epoch"`
		Sources manifest.Sources `json:"sources"`
	}{fmt.Sprintf("kib %s stages r%d", version.String(), stages.Revision), m.Distro, m.DebArch, m.Seed, m.SourceDateEpoch, m.Sources}
	prev, err := canonicalHash(head)
	if err != nil {
		return nil, err
	}
	roots := map[string]bool{}
	for _, p := range m.Pipelines {
		if p.Build != "" {
			roots[p.Build] = true
		}
	}
	keys := make([]string, len(m.Pipelines))
	for i, p := range m.Pipelines {
		if roots[p.Name] && p.Build == "" {
			// A build root depends only on its own pins (its stages name
			// every deb by digest), so manifests of other images share it.
			// The pipelines after it depend on it through head's sources.
			h, err := canonicalHash(struct {
				Engine   string            `json:"engine"`
				Arch     string            `json:"deb_arch"`
				Pipeline manifest.Pipeline `json:"build_root"`
			}{head.Engine, m.DebArch, p})
			if err != nil {
				return nil, err
			}
			keys[i] = h
			continue
		}
		h, err := canonicalHash(struct {
			Prev     string            `json:"prev"`
			Pipeline manifest.Pipeline `json:"pipeline"`
		}{prev, p})
		if err != nil {
			return nil, err
		}
		keys[i], prev = h, h
	}
	return keys, nil
}

func canonicalHash(v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	c, err := manifest.Canonicalize(raw)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// Build executes m and exports the chosen exports into opts.OutputDir. It
// never resolves anything: every input comes from the manifest.
func (e *Engine) Build(ctx context.Context, m *manifest.Manifest, opts Options) ([]Artifact, error) {
	if e.Store == nil {
		return nil, errors.New("engine: no store")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	exports := m.Exports
	if len(opts.Exports) > 0 {
		exports = nil
		for _, name := range opts.Exports {
			ex, err := m.Export(name)
			if err != nil {
				return nil, err
			}
			exports = append(exports, ex)
		}
	}
	keys, err := Keys(m)
	if err != nil {
		return nil, err
	}
	plan, err := e.plan(m, keys, exports)
	if err != nil {
		return nil, err
	}
	if err := hostcmd.Check(plan.tools...); err != nil {
		return nil, err
	}
	log := e.log()
	total := len(plan.run) + 1
	if len(plan.run) > 0 {
		total++
	}
	step := 0
	inputs := map[string]string{}
	if len(plan.run) > 0 {
		step++
		e.step(step, total, "fetch sources")
		start := time.Now()
		srcs, err := e.fetch(ctx, m.Sources.AllDebs())
		if err != nil {
			return nil, fmt.Errorf("fetching sources: %w", err)
		}
		log.Info("sources ready", "count", len(srcs), "duration", time.Since(start).Round(time.Millisecond))
		plan.sources = srcs
	}
	for i, p := range m.Pipelines {
		if plan.needed[i] && !plan.run[i] {
			inputs[p.Name] = outputPath(e.Store.ObjectPath(keys[i]), p.Kind)
			log.Info("pipeline cached", "pipeline", p.Name, "key", keys[i][:16])
		}
	}
	for i := range m.Pipelines {
		if !plan.run[i] {
			continue
		}
		p := &m.Pipelines[i]
		step++
		e.step(step, total, "pipeline "+p.Name)
		start := time.Now()
		dir, built, err := e.Store.Object(ctx, keys[i], func(ctx context.Context, dir string) error {
			return e.runPipeline(ctx, m, p, dir, inputs, plan.sources, step, total)
		})
		if err != nil {
			return nil, fmt.Errorf("pipeline %s: %w", p.Name, err)
		}
		inputs[p.Name] = outputPath(dir, p.Kind)
		log.Info("pipeline done", "pipeline", p.Name, "built", built, "key", keys[i][:16], "duration", time.Since(start).Round(time.Millisecond))
	}
	step++
	e.step(step, total, "export")
	var arts []Artifact
	for _, ex := range exports {
		_, idx := m.Pipeline(ex.Name)
		a, err := e.export(ctx, m, ex, inputs[ex.Name], opts.OutputDir)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", ex.Name, err)
		}
		a.Cached = !plan.run[idx]
		log.Info("exported", "export", ex.Name, "path", a.Path, "sha256", a.SHA256, "cached", a.Cached)
		arts = append(arts, a)
	}
	log.Info("build done", "peak_rss_mib", fmt.Sprintf("%.1f", peakRSSMiB()))
	return arts, nil
}

type plan struct {
	needed  map[int]bool // pipelines whose output is read
	run     map[int]bool // pipelines that must run
	tools   []string     // host tools the pipelines to run need
	sources map[string]string
}

// plan decides which pipelines must run: the exported ones the store lacks,
// and, for those, the inputs the store lacks.
func (e *Engine) plan(m *manifest.Manifest, keys []string, exports []manifest.Export) (*plan, error) {
	p := &plan{needed: map[int]bool{}, run: map[int]bool{}}
	var visit func(i int) error
	visit = func(i int) error {
		if p.needed[i] {
			return nil
		}
		p.needed[i] = true
		if e.Store.HasObject(keys[i]) {
			return nil
		}
		p.run[i] = true
		if b := m.Pipelines[i].Build; b != "" {
			// The build root's tools are checked when they run.
			_, j := m.Pipeline(b)
			if err := visit(j); err != nil {
				return err
			}
		}
		for _, st := range m.Pipelines[i].Stages {
			s, err := stages.New(st.Type, st.Options)
			if err != nil {
				return err
			}
			if tu, ok := s.(stages.ToolUser); ok && m.Pipelines[i].Build == "" {
				p.tools = append(p.tools, tu.Tools()...)
			}
			if r, ok := s.(stages.InputReader); ok {
				for _, in := range r.InputNames() {
					_, j := m.Pipeline(in)
					if j < 0 {
						return fmt.Errorf("pipeline %s: input %q not found", m.Pipelines[i].Name, in)
					}
					if err := visit(j); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	for _, ex := range exports {
		_, i := m.Pipeline(ex.Name)
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func outputPath(objDir, kind string) string {
	if kind == manifest.KindTree {
		return filepath.Join(objDir, "tree")
	}
	return filepath.Join(objDir, "out")
}

func (e *Engine) step(i, n int, name string) {
	if e.Progress != nil {
		e.Progress.Step(i, n, name)
	}
	e.log().Info("step", "step", i, "of", n, "name", name)
}

// runPipeline runs p's stages into dir.
func (e *Engine) runPipeline(ctx context.Context, m *manifest.Manifest, p *manifest.Pipeline, dir string, inputs, sources map[string]string, step, total int) (err error) {
	out := outputPath(dir, p.Kind)
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	work, done, err := e.Store.TempDir("work")
	if err != nil {
		return err
	}
	defer done()
	env := &stages.Env{
		Inputs:          inputs,
		Sources:         sources,
		SourceDateEpoch: m.SourceDateEpoch,
		Seed:            m.Seed,
		Arch:            m.DebArch,
		Log:             e.log().With("pipeline", p.Name),
		ToolLog:         e.ToolLog,
		Cache: func(ctx context.Context, key string, build func(context.Context, string) error) (string, error) {
			dir, _, err := e.Store.Object(ctx, key, build)
			return dir, err
		},
		Record: func(name string, data []byte) error {
			return store.WriteRecord(dir, name, data)
		},
		Records: func(name string) ([]stages.Record, error) {
			recs, err := e.Store.Records(name)
			if err != nil {
				return nil, err
			}
			out := make([]stages.Record, len(recs))
			for i, r := range recs {
				out[i] = stages.Record{Tree: outputPath(r.Object, manifest.KindTree), Data: r.Data}
			}
			return out, nil
		},
	}
	// The digests of the files the last stage hashed as it wrote them.
	var digests map[string]string
	env.Digest = func(file, sum string) {
		if digests == nil {
			digests = map[string]string{}
		}
		digests[file] = sum
	}
	if env.ToolLog == nil {
		env.ToolLog = io.Discard
	}
	env.Scratch = filepath.Join(work, "pipeline")
	if err := os.Mkdir(env.Scratch, 0o755); err != nil {
		return err
	}
	// What the stages left to finish (a tree-copy's overlay, see
	// stages/tree_link.go) is settled whether they succeeded or not.
	defer func() {
		start := time.Now()
		if endErr := env.End(context.WithoutCancel(ctx), err != nil); endErr != nil && err == nil {
			err = fmt.Errorf("finishing the pipeline: %w", endErr)
		} else if endErr != nil {
			env.Log.Error("finishing the failed pipeline", "err", endErr)
		}
		if d := time.Since(start); d >= time.Millisecond {
			env.Log.Info("pipeline finished", "duration", d.Round(time.Millisecond))
		}
		if err == nil && len(digests) > 0 {
			err = keepDigests(dir, out, digests)
		}
	}()
	if p.Build != "" {
		env.BuildRoot = inputs[p.Build]
		storeDir, err := filepath.Abs(e.Store.Dir())
		if err != nil {
			return err
		}
		env.Binds = []string{storeDir}
	}
	if p.Kind == manifest.KindTree {
		env.Tree = out
	} else {
		env.Out = out
	}
	for j, st := range p.Stages {
		s, err := stages.New(st.Type, st.Options)
		if err != nil {
			return fmt.Errorf("stage %d (%s): %w", j, st.Type, err)
		}
		stageWork := filepath.Join(work, fmt.Sprintf("%02d-%s", j, st.Type))
		if err := os.Mkdir(stageWork, 0o755); err != nil {
			return err
		}
		env.Work = stageWork
		if e.Progress != nil {
			e.Progress.Step(step, total, fmt.Sprintf("pipeline %s: %s (%d/%d)", p.Name, st.Type, j+1, len(p.Stages)))
		}
		start := time.Now()
		digests = nil // an earlier stage's files may change in this one
		if err := s.Run(ctx, env); err != nil {
			return fmt.Errorf("stage %d (%s): %w", j, st.Type, err)
		}
		if err := os.RemoveAll(stageWork); err != nil {
			return err
		}
		env.Log.Info("stage done", "stage", st.Type, "index", j, "duration", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// keepDigests records, with the object being built in dir, the sha256 of
// files in its output directory out, each with the file's size and time now.
func keepDigests(dir, out string, sums map[string]string) error {
	ds := make(map[string]store.Digest, len(sums))
	for name, sum := range sums {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			return fmt.Errorf("digest of %s: %w", name, err)
		}
		ds[name] = store.NewDigest(sum, fi)
	}
	return store.AddDigests(dir, ds)
}

// fetch makes sure every deb is in the store, verified, and returns their
// paths by digest.
func (e *Engine) fetch(ctx context.Context, debs []manifest.Deb) (map[string]string, error) {
	par := e.FetchParallel
	if par <= 0 {
		par = 8
	}
	if n := runtime.NumCPU() * 4; par > n {
		par = n
	}
	var total int64
	for _, d := range debs {
		total += d.Size
	}
	var (
		mu       sync.Mutex
		done     int64
		paths    = make(map[string]string, len(debs))
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, par)
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, d := range debs {
		wg.Add(1)
		sem <- struct{}{}
		go func(d manifest.Deb) {
			defer wg.Done()
			defer func() { <-sem }()
			path, _, err := e.Store.Source(ctx, d.SHA256, d.Size, 3, func(ctx context.Context, w io.Writer) error {
				return e.download(ctx, d.URL, w)
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s %s (%s): %w", d.Name, d.Version, d.URL, err)
					cancel()
				}
				return
			}
			paths[d.SHA256] = path
			done += d.Size
			if e.Progress != nil {
				e.Progress.Bytes(done, total)
			}
		}(d)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return paths, nil
}

// download writes the content at rawURL (http, https or file) to w.
func (e *Engine) download(ctx context.Context, rawURL string, w io.Writer) error {
	return fetch.Get(ctx, e.HTTPClient, rawURL, w)
}
