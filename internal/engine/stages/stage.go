// Package stages holds kib's build steps: one file per stage type, each a
// type defined over its options struct (internal/stageopt) whose Run method
// does the step.
package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// Stage is one step of a pipeline. Its options are the struct's fields.
type Stage interface {
	Run(ctx context.Context, env *Env) error
}

// Env is what a stage sees while it runs.
type Env struct {
	// Tree is the root directory a tree pipeline is building; empty for file
	// pipelines.
	Tree string
	// Out is the directory a file pipeline writes its files into; empty for
	// tree pipelines.
	Out string
	// Inputs maps the names of earlier pipelines to their outputs: a tree's
	// root directory, or a file pipeline's output directory.
	Inputs map[string]string
	// Sources maps a sha256 hex digest of a pinned source to its path in the
	// store; every source is verified before the stage runs.
	Sources map[string]string
	// Work is a scratch directory, removed after the pipeline.
	Work string
	// SourceDateEpoch is the time (seconds since 1970) every timestamp is
	// clamped to.
	SourceDateEpoch int64
	// Seed drives every "random" value (UUIDs, GUIDs, hash seeds).
	Seed int64
	// Arch is the Debian architecture of the image (amd64).
	Arch string
	// Log receives structured log lines; ToolLog receives host tools' stderr.
	Log     *slog.Logger
	ToolLog io.Writer
	// BuildRoot, if set, is the tree whose tools the stage runs (in a mount
	// namespace, see hostcmd) and whose files (GRUB's images) it reads;
	// empty means the host's.
	BuildRoot string
	// Binds are the host directories tools in the build root work in: the
	// store, which holds Tree, Out, Work, the inputs and the sources.
	Binds []string
	// Cache, if set, returns the directory of the store object with key (a
	// sha256 hex digest), calling build to fill an empty directory when the
	// store lacks it: what a stage keeps between builds to go faster, never
	// anything that makes its output differ from a clean build's.
	Cache func(ctx context.Context, key string, build func(ctx context.Context, dir string) error) (string, error)
	// Scratch is a scratch directory kept for the whole pipeline, on the
	// store's file system; empty when the pipeline has none (then stages
	// needing one do without).
	Scratch string
	// Record, if set, keeps data under name with the pipeline's output in
	// the store, for later builds to find with Records.
	Record func(name string, data []byte) error
	// Records, if set, returns what the store's complete outputs keep
	// under name (see Record).
	Records func(name string) ([]Record, error)
	// Digest, if set, takes the sha256 (hex) of a file the stage wrote in
	// Out, under its name there, when the stage hashed it while writing it:
	// export then need not read the file again. The engine keeps the
	// digests of the pipeline's last stage only, as an earlier stage's file
	// may change after it.
	Digest func(file, sha256 string)

	ends []func(ctx context.Context, failed bool) error
}

// Record is what an output in the store keeps under a name.
type Record struct {
	// Tree is the output's tree directory.
	Tree string
	Data []byte
}

// AtEnd registers f to run once the pipeline's stages are done, before its
// output is kept; failed tells whether a stage failed. The last registered
// runs first.
func (e *Env) AtEnd(f func(ctx context.Context, failed bool) error) {
	e.ends = append(e.ends, f)
}

// End runs the functions AtEnd registered, each once, and returns the
// first error.
func (e *Env) End(ctx context.Context, failed bool) error {
	var first error
	for len(e.ends) > 0 {
		f := e.ends[len(e.ends)-1]
		e.ends = e.ends[:len(e.ends)-1]
		if err := f(ctx, failed); err != nil && first == nil {
			first = err
			failed = true
		}
	}
	return first
}

// exec runs a tool: from the build root if there is one, else the host's.
func (e *Env) exec(ctx context.Context, c hostcmd.Cmd) ([]byte, error) {
	if e.BuildRoot != "" {
		c.Root, c.Binds = e.BuildRoot, e.Binds
	}
	return hostcmd.Run(ctx, c)
}

// check reports tools missing from the build root, or from the host
// without one.
func (e *Env) check(tools ...string) error {
	if e.BuildRoot == "" {
		return hostcmd.Check(tools...)
	}
	for _, t := range tools {
		if !hostcmd.InRoot(e.BuildRoot, t) {
			return fmt.Errorf("tool %q is not in the build root: add the package that ships it to the distro's build_packages", t)
		}
	}
	return nil
}

// Input returns the output path of the earlier pipeline name.
func (e *Env) Input(name string) (string, error) {
	p, ok := e.Inputs[name]
	if !ok {
		return "", fmt.Errorf("input pipeline %q is not available (have %s)", name, strings.Join(slices.Sorted(maps.Keys(e.Inputs)), ", "))
	}
	return p, nil
}

// BaseEnv returns the environment host tools run with: SOURCE_DATE_EPOCH and a
// fixed locale and time zone.
func (e *Env) BaseEnv() []string {
	return []string{
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", e.SourceDateEpoch),
		"LC_ALL=C.UTF-8", "TZ=UTC",
	}
}

// Revision is part of every store key: bump it when a stage writes other
// bytes for the same options, so that a store does not serve objects made
// by the old code. 2: mmdebstrap leaves no apt/dpkg build settings behind; 3: nor the mount point of its local repository;
// 4: gce-tar's and oci-archive's gzip streams are compressed in parallel blocks.
// 5: the initramfs is built once, zstd-compressed by kib.
// 6: the package tree's directory times are SOURCE_DATE_EPOCH (see settleTree).
const Revision = 6

// entry is a registered stage type: run makes the stage from its decoded
// options, opts returns zero options (for tests).
type entry struct {
	run  func(opts any) Stage
	opts func() any
}

var registry = map[string]entry{}

// register adds the stage type name, whose options type O is in stageopt;
// stage makes the runnable stage from decoded options (a conversion: each
// stage type is defined over its options type). It is called from init
// functions, one per stage file.
func register[O any](name string, stage func(*O) Stage) {
	if !slices.Contains(stageopt.Types(), name) {
		panic("stages: stage type " + name + " has no options type in internal/stageopt: declare it there")
	}
	if _, dup := registry[name]; dup {
		panic("stages: duplicate stage type " + name)
	}
	registry[name] = entry{func(opts any) Stage { return stage(opts.(*O)) }, func() any { return new(O) }}
}

// UnknownTypeError reports a stage type kib does not have.
type UnknownTypeError = stageopt.UnknownTypeError

// New decodes the options of a stage of type typ, rejecting unknown fields and
// invalid values (see stageopt.New).
func New(typ string, options json.RawMessage) (Stage, error) {
	opts, err := stageopt.New(typ, options)
	if err != nil {
		return nil, err
	}
	r, ok := registry[typ]
	if !ok {
		return nil, fmt.Errorf("stage type %q: kib knows its options but cannot run it", typ)
	}
	return r.run(opts), nil
}

// Types lists the registered stage types, sorted.
func Types() []string { return slices.Sorted(maps.Keys(registry)) }

// InputReader is implemented by stages that read the outputs of earlier
// pipelines; the engine runs those pipelines first.
type InputReader = stageopt.InputReader

// ToolUser is implemented by stages that run host tools; the engine checks
// that they are installed before it fetches or runs anything.
type ToolUser interface {
	Tools() []string
}
