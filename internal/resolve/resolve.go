// Package resolve turns an image request into a pinned manifest: distro
// definition, repositories (with their keys), customizations and depsolve.
// It is the one request-to-manifest mapping, used by kib build, the compose
// service's workers and kojid.
package resolve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/distro"
	"github.com/kib-project/kib/internal/manifest"
)

// PackageSets are the package sets kib resolves for an image, by composer's
// names: "os" (the image's base packages) and "blueprint" (the packages the
// customizations add). They are resolved together, so a repository for
// either serves both. A repository whose package_sets name none of them
// would be unused; such requests are refused (see CheckRepository).
var PackageSets = []string{"os", "blueprint"}

// Repository is one repository of a request.
type Repository struct {
	// Source is "URL [SUITE [COMPONENT...]]"; the suite and components
	// default to the definition's first repository's. The CLI also allows
	// an "[OPTIONS] " prefix (trusted=yes, signed-by=FILE); API requests
	// never do.
	Source string
	// GPGKey is an ASCII-armored OpenPGP public key (or several) that signs
	// the repository's Release file; it replaces the distro's keyring for
	// this repository and is installed into the image with its apt source.
	GPGKey string
	// CheckGPG requires GPGKey (composer's check_gpg).
	CheckGPG bool
	// PackageSets limits the repository to these package sets; empty means
	// all.
	PackageSets []string
}

// Request is an image request in kib's names.
type Request struct {
	Distro    string
	Arch      string
	ImageType string
	// Repositories replace the distro's; when empty, the machine's apt
	// sources (Resolver.HostRoot) or the definition's mirrors are used.
	Repositories []Repository
	Blueprint    *blueprint.Blueprint
	// Seed, SourceDateEpoch and Size override the defaults when set.
	Seed, SourceDateEpoch, Size *int64
}

// Resolver resolves requests. The zero value is not usable: Distros and
// Solver are required.
type Resolver struct {
	Distros *distro.Catalog
	Solver  manifest.Solver
	// HostRoot is the root directory whose apt sources serve a request
	// without repositories ("/" for the machine's); empty means the
	// definitions' fallback mirrors.
	HostRoot string
	// KeyDir is where keyrings made from requests' gpgkey are written.
	// Required when a request has one.
	KeyDir string
	// FileRoots are the directories file: repositories may be under; a
	// file: repository elsewhere is refused. AnyFile allows every file:
	// repository (the CLI: its user reads their own files anyway).
	FileRoots []string
	AnyFile   bool
}

// Error is a request the resolver refuses; Field names the offending field
// in kib's request terms (repositories[1].package_sets).
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// CheckRepository checks what a repository asks for against what kib can
// do, without network access; the compose API calls it at POST so a
// request it accepts can be built.
func (r *Resolver) CheckRepository(field string, repo Repository) error {
	src := strings.TrimSpace(repo.Source)
	if strings.HasPrefix(src, "[") {
		return &Error{field + ".baseurl", "options in brackets are not allowed here"}
	}
	if repo.CheckGPG && strings.TrimSpace(repo.GPGKey) == "" {
		return &Error{field + ".gpgkey", "required when check_gpg is set"}
	}
	if repo.GPGKey != "" && !strings.Contains(repo.GPGKey, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
		return &Error{field + ".gpgkey", "must be an ASCII-armored OpenPGP public key (-----BEGIN PGP PUBLIC KEY BLOCK-----)"}
	}
	if len(repo.PackageSets) > 0 && !slices.ContainsFunc(repo.PackageSets, func(s string) bool { return slices.Contains(PackageSets, s) }) {
		return &Error{field + ".package_sets", fmt.Sprintf("%q names none of the package sets kib resolves (%s); the repository would be unused", repo.PackageSets, strings.Join(PackageSets, ", "))}
	}
	url, _, _ := strings.Cut(src, " ")
	if strings.HasPrefix(url, "file:") {
		return r.checkFile(field+".baseurl", url)
	}
	return nil
}

// checkFile admits a file: URL only under one of FileRoots.
func (r *Resolver) checkFile(field, url string) error {
	if r.AnyFile {
		return nil
	}
	p := strings.TrimPrefix(strings.TrimPrefix(url, "file:"), "//")
	if !filepath.IsAbs(p) {
		return &Error{field, fmt.Sprintf("%q must be an absolute file: URL", url)}
	}
	// Symbolic links are resolved so that a link under an allowed
	// directory cannot lead out of it.
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		real = filepath.Clean(p)
	}
	for _, root := range r.FileRoots {
		root = filepath.Clean(root)
		if rr, err := filepath.EvalSymlinks(root); err == nil {
			root = rr
		}
		if real == root || strings.HasPrefix(real, root+string(filepath.Separator)) {
			return nil
		}
	}
	if len(r.FileRoots) == 0 {
		return &Error{field, "file: repositories are not allowed on this service (an administrator can allow directories with file_repositories)"}
	}
	return &Error{field, fmt.Sprintf("%s is not under a directory this service allows (%s)", p, strings.Join(r.FileRoots, ", "))}
}

// Manifest resolves req into a pinned manifest.
func (r *Resolver) Manifest(ctx context.Context, req *Request) (*manifest.Manifest, error) {
	if r.Distros == nil || r.Solver == nil {
		return nil, errors.New("resolve: Distros and Solver are required")
	}
	def, err := r.Distros.Get(req.Distro)
	if err != nil {
		return nil, err
	}
	if _, err := def.DebArch(req.Arch); err != nil {
		return nil, err
	}
	if _, err := def.ImageType(req.ImageType); err != nil {
		return nil, err
	}
	mreq := manifest.Request{Distro: def, Arch: req.Arch, ImageType: req.ImageType, Blueprint: req.Blueprint,
		Seed: req.Seed, SourceDateEpoch: req.SourceDateEpoch, Size: req.Size}
	if req.SourceDateEpoch != nil && *req.SourceDateEpoch < 0 {
		return nil, &Error{"source_date_epoch", fmt.Sprintf("%d must not be negative", *req.SourceDateEpoch)}
	}
	if mreq.Repos, mreq.Keyrings, err = r.repos(def, req.Repositories); err != nil {
		return nil, err
	}
	return manifest.Generate(ctx, r.Solver, mreq)
}

// repos returns the repositories a request resolves from and the keyrings
// the image gets for them.
func (r *Resolver) repos(def *distro.Definition, list []Repository) ([]depsolve.Repo, []manifest.Keyring, error) {
	if len(list) == 0 {
		var host []depsolve.SourceEntry
		if r.HostRoot != "" {
			var err error
			if host, err = depsolve.HostSources(r.HostRoot); err != nil {
				return nil, nil, fmt.Errorf("reading the machine's apt sources: %w", err)
			}
		}
		repos, err := manifest.ResolveRepos(def, host, nil)
		return repos, nil, err
	}
	base := def.Repositories[0]
	var repos []depsolve.Repo
	var keys []manifest.Keyring
	for i, rp := range list {
		field := fmt.Sprintf("repositories[%d]", i)
		if len(rp.PackageSets) > 0 && !slices.ContainsFunc(rp.PackageSets, func(s string) bool { return slices.Contains(PackageSets, s) }) {
			return nil, nil, &Error{field + ".package_sets", fmt.Sprintf("%q names none of the package sets kib resolves (%s)", rp.PackageSets, strings.Join(PackageSets, ", "))}
		}
		d, err := depsolve.ParseRepoFlag(rp.Source, base.Suite, base.Components)
		if err != nil {
			return nil, nil, err
		}
		if strings.HasPrefix(d.URL, "file:") {
			if err := r.checkFile(field+".baseurl", d.URL); err != nil {
				return nil, nil, err
			}
		}
		if rp.CheckGPG && strings.TrimSpace(rp.GPGKey) == "" {
			return nil, nil, &Error{field + ".gpgkey", "required when check_gpg is set"}
		}
		if rp.GPGKey != "" {
			k, err := r.writeKey(rp.GPGKey)
			if err != nil {
				return nil, nil, fmt.Errorf("%s.gpgkey: %w", field, err)
			}
			d.SignedBy, d.Trusted = k.HostPath, false
			keys = append(keys, k)
		} else if !d.Trusted && d.SignedBy == "" {
			d.SignedBy, d.Keyring = def.Keyring, def.KeyringData
		}
		repos = append(repos, d)
	}
	return repos, keys, nil
}

// writeKey stores an armored key under KeyDir, named by its digest.
func (r *Resolver) writeKey(armored string) (manifest.Keyring, error) {
	if r.KeyDir == "" {
		return manifest.Keyring{}, errors.New("this resolver has no key directory")
	}
	if !strings.Contains(armored, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
		return manifest.Keyring{}, errors.New("must be an ASCII-armored OpenPGP public key")
	}
	sum := sha256.Sum256([]byte(armored))
	name := "kib-" + hex.EncodeToString(sum[:8]) + ".asc"
	if err := os.MkdirAll(r.KeyDir, 0o755); err != nil {
		return manifest.Keyring{}, err
	}
	p := filepath.Join(r.KeyDir, name)
	if err := os.WriteFile(p, []byte(armored), 0o644); err != nil {
		return manifest.Keyring{}, err
	}
	return manifest.Keyring{HostPath: p, ImagePath: "/etc/apt/keyrings/" + name, Data: armored}, nil
}
