package kojid

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/kojimeta"
)

// BuildRequest is what an imageBuilderBuildArch task asks a Builder for.
type BuildRequest struct {
	// Distro is opts.distro; empty means the Builder's default.
	Distro string
	// Arch is the Koji arch (x86_64, aarch64).
	Arch string
	// Types are the image types, built in order.
	Types []string
	// Repos are opts.repos with $arch and $basearch replaced.
	Repos     []string
	Blueprint map[string]any
	Seed      *int64
	Preview   *bool
	// OutputDir is an empty directory for the results.
	OutputDir string
	// Log is the task's logger; ToolLog gets the host tools' output.
	Log     *slog.Logger
	ToolLog io.Writer
}

// BuiltImage is one image a Builder made: the image file with its
// manifest, SBOMs and build-info.json beside it.
type BuiltImage struct {
	Path     string
	Manifest string
	SBOMs    []string
	Info     *buildinfo.BuildInfo
}

// Builder builds images on the host. EngineBuilder is the real one.
type Builder interface {
	Build(ctx context.Context, req BuildRequest) ([]BuiltImage, error)
}

// ImageBuilderBuildArch handles imageBuilderBuildArch(name, version,
// release, arch, types, target_info, build_config, repo_info, opts): it
// builds each type with Builder, uploads image, manifest, SBOMs and the
// build log into the task's output, and returns the upstream builder's
// result {task_id, name, version, release, arch, files, logs, rpmlist},
// with the image's Debian packages as rpmlist.
type ImageBuilderBuildArch struct {
	Builder Builder
}

var _ Handler = ImageBuilderBuildArch{}

// Weight is the upstream plugin's _taskWeight.
func (ImageBuilderBuildArch) Weight() float64 { return 0.2 }

// Handle runs the task.
func (h ImageBuilderBuildArch) Handle(ctx context.Context, t *Task) (any, error) {
	if len(t.Params) < 8 {
		return nil, paramErr("imageBuilderBuildArch takes 8 or 9 arguments, %d given", len(t.Params))
	}
	var nvra [4]string
	for i, n := range []string{"name", "version", "release", "arch"} {
		s, err := strArg(t.Params[i], n)
		if err != nil {
			return nil, err
		}
		nvra[i] = s
	}
	name, version, release, arch := nvra[0], nvra[1], nvra[2], nvra[3]
	types, err := strListArg(t.Params[4], "types")
	if err != nil {
		return nil, err
	}
	opts, err := ParseBuildOpts(params{t}.opt(8, "opts"))
	if err != nil {
		return nil, err
	}
	if len(types) == 0 {
		return nil, paramErr("types: at least one image type is required")
	}
	repos := make([]string, len(opts.Repos))
	for i, r := range opts.Repos {
		repos[i] = strings.NewReplacer("$basearch", arch, "$arch", arch).Replace(r)
	}
	if opts.Preview != nil {
		t.Log.Info("opts.preview has no effect on Debian images (no prerelease state)", "preview", *opts.Preview)
	}
	out := filepath.Join(t.WorkDir, "output")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(t.WorkDir, "build.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	req := BuildRequest{Distro: opts.Distro, Arch: arch, Types: types, Repos: repos, Blueprint: opts.Blueprint,
		Seed: opts.Seed, Preview: opts.Preview, OutputDir: out, Log: t.Log, ToolLog: lf}
	t.Log.Info("building", "types", types, "arch", arch, "distro", opts.Distro, "repos", repos)
	images, buildErr := h.Builder.Build(ctx, req)
	lf.Close()
	// The build log goes to the task whether or not the build worked.
	if err := uploadFile(ctx, t, logPath, "build.log"); err != nil && buildErr == nil {
		return nil, err
	}
	if buildErr != nil {
		return nil, fmt.Errorf("building %s for %s: %w", strings.Join(types, ", "), arch, buildErr)
	}
	infos := make([]kojimeta.BuildInfo, len(images))
	for i, im := range images {
		infos[i] = *im.Info
	}
	names, err := kojimeta.ImageFilenames(name, version, release, infos)
	if err != nil {
		return nil, err
	}
	files := []any{}
	rpms := []any{}
	seen := map[string]bool{}
	for i, im := range images {
		up := []struct{ src, dst string }{{im.Path, names[i]}, {im.Manifest, names[i] + ".manifest.json"}}
		for _, s := range im.SBOMs {
			suffix := strings.TrimPrefix(filepath.Base(s), filepath.Base(im.Path))
			up = append(up, struct{ src, dst string }{s, names[i] + suffix})
		}
		for _, u := range up {
			if err := uploadFile(ctx, t, u.src, u.dst); err != nil {
				return nil, err
			}
			files = append(files, u.dst)
		}
		for _, p := range im.Info.Packages {
			key := p.Name + " " + p.Version + " " + p.Arch
			if seen[key] {
				continue
			}
			seen[key] = true
			rpms = append(rpms, debAsRPM(p))
		}
	}
	t.Log.Info("uploaded", "files", len(files), "packages", len(rpms))
	return map[string]any{
		"task_id": t.Info.ID, "name": name, "version": version, "release": release, "arch": arch,
		"files": files, "logs": []any{}, "rpmlist": rpms,
	}, nil
}

// debAsRPM describes a Debian package in the fields of a Koji rpmlist entry
// (external RPM): the Debian version is split into epoch, upstream version
// and revision ("0" for native packages); location "debian" marks it
// external.
func debAsRPM(p buildinfo.Package) map[string]any {
	v := p.Version
	var epoch any = nil
	if e, rest, ok := strings.Cut(v, ":"); ok {
		var n int64
		if _, err := fmt.Sscan(e, &n); err == nil {
			epoch, v = n, rest
		}
	}
	ver, rel := v, "0"
	if i := strings.LastIndex(v, "-"); i > 0 {
		ver, rel = v[:i], v[i+1:]
	}
	return map[string]any{"name": p.Name, "version": ver, "release": rel, "epoch": epoch, "arch": p.Arch,
		"payloadhash": p.SHA256, "location": "debian", "debian_version": p.Version}
}

func uploadFile(ctx context.Context, t *Task, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	_, err = t.Upload(ctx, name, f, st.Size())
	return err
}
