package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kib-project/kib/internal/aptroot"
	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/resolve"
)

// requestOptions are the flags that describe an image request.
type requestOptions struct {
	distro      string
	arch        string
	repos       []string
	blueprint   string
	seed        int64
	sde         int64
	definitions string
	cacheDir    string
	size        string
	apt         string
	// storeDir is the store an apt root is kept in (kib build's --store);
	// empty means <cache-dir>/store.
	storeDir string
}

func (o *requestOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.distro, "distro", "debian-12", "distro definition to build from")
	f.StringVar(&o.arch, "arch", "x86_64", "architecture of the image")
	f.StringArrayVar(&o.repos, "repo", nil, `repository "[trusted=yes] URL [SUITE [COMPONENT...]]" (repeatable; replaces the machine's apt sources)`)
	f.StringVar(&o.blueprint, "blueprint", "", "blueprint file (TOML or JSON) with customizations")
	f.Int64Var(&o.seed, "seed", 0, "seed for every generated identifier (default: the distro's)")
	f.Int64Var(&o.sde, "source-date-epoch", 0, "SOURCE_DATE_EPOCH of the image (default: date of the newest repository Release file)")
	f.StringVar(&o.definitions, "definitions", "", "directory of distro definitions that override the built-in ones")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "directory for kib's caches (apt metadata)")
	f.StringVar(&o.size, "size", "", "disk size of a disk image, e.g. 4GiB (default: the blueprint's, else the definition's)")
	f.StringVar(&o.apt, "apt", "auto", "where apt-get resolves packages: host (the machine's apt), root (a Debian root kib bootstraps from the repositories; needs root) or auto (host if it has apt-get)")
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "kib")
	}
	return filepath.Join(os.TempDir(), "kib-cache")
}

// manifest builds the pinned manifest for image type t.
func (o *requestOptions) manifest(ctx context.Context, cmd *cobra.Command, t string, log io.Writer) (*manifest.Manifest, error) {
	cat, err := distro.Load(o.definitions)
	if err != nil {
		return nil, err
	}
	req := &resolve.Request{Distro: o.distro, Arch: o.arch, ImageType: t}
	if cmd.Flags().Changed("seed") {
		req.Seed = &o.seed
	}
	if cmd.Flags().Changed("source-date-epoch") {
		if o.sde < 0 {
			return nil, fmt.Errorf("--source-date-epoch: %d must not be negative", o.sde)
		}
		req.SourceDateEpoch = &o.sde
	}
	if o.size != "" {
		n, err := blueprint.ParseSize(o.size)
		if err != nil {
			return nil, fmt.Errorf("--size: %w", err)
		}
		req.Size = &n
	}
	if o.blueprint != "" {
		f, err := os.Open(o.blueprint)
		if err != nil {
			return nil, fmt.Errorf("--blueprint: %w", err)
		}
		bp, err := blueprint.Parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--blueprint %s: %w", o.blueprint, err)
		}
		req.Blueprint = bp
	}
	for _, r := range o.repos {
		req.Repositories = append(req.Repositories, resolve.Repository{Source: r})
	}
	aptMode, err := depsolve.ParseAptMode(o.apt)
	if err != nil {
		return nil, fmt.Errorf("--apt: %w", err)
	}
	storeDir := o.storeDir
	if storeDir == "" {
		storeDir = filepath.Join(o.cacheDir, "store")
	}
	roots := &aptroot.Bootstrapper{StoreDir: storeDir, Log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))}
	rs := &resolve.Resolver{
		Distros: cat, Solver: &depsolve.Solver{CacheDir: o.cacheDir, Log: log, Apt: aptMode, Roots: roots},
		HostRoot: "/", KeyDir: filepath.Join(o.cacheDir, "keyrings"), AnyFile: true,
	}
	return rs.Manifest(ctx, req)
}
