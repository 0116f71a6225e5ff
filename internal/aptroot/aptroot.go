// Package aptroot makes the small Debian root apt-get runs in on a host
// without apt (a Fedora Koji builder): it reads a repository's Release and
// Packages indices in Go (verified with the distro's keyring), resolves apt's
// dependency closure, fetches those .debs by sha256 into the store, unpacks
// them with kib's own deb reader and keeps the tree in the store, keyed by
// the debs' digests, for the next run.
package aptroot

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/kib-project/kib/internal/debindex"
	"github.com/kib-project/kib/internal/depsolve"
	"github.com/kib-project/kib/internal/engine/stages"
	"github.com/kib-project/kib/internal/fetch"
	"github.com/kib-project/kib/internal/store"
)

// Packages are what the root holds besides the Essential packages (the
// shell and utilities apt-key, which apt runs to check signatures, is
// written in), with their dependencies: apt-get and, through its
// dependencies, gpgv.
var Packages = []string{"apt"}

// Bootstrapper makes apt roots. The zero value is not usable: set Store or
// StoreDir.
type Bootstrapper struct {
	// Store keeps the debs and the root.
	Store *store.Store
	// StoreDir, without Store, is the store's directory; it is opened on
	// first use (kib manifest opens no store unless it needs one).
	StoreDir string
	// Client fetches indices and debs; nil means a client with a 10 minute
	// timeout.
	Client *http.Client
	// Log receives progress; nil discards it.
	Log *slog.Logger

	once  sync.Once
	st    *store.Store
	stErr error
}

// AptRoot returns a directory tree holding apt-get for arch, made from
// repos' packages (the first repository that has apt is used).
func (b *Bootstrapper) AptRoot(ctx context.Context, repos []depsolve.Repo, arch string) (string, error) {
	b.once.Do(func() {
		if b.st = b.Store; b.st == nil && b.StoreDir == "" {
			b.stErr = errors.New("no store to keep it in")
		} else if b.st == nil {
			b.st, b.stErr = store.Open(b.StoreDir)
		}
	})
	if b.stErr != nil {
		return "", fmt.Errorf("apt root: %w", b.stErr)
	}
	log := b.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	// The Release files (small) are read and verified on every run; when
	// they are the ones the cached root was resolved from, the Packages
	// indices (large) need not be read again.
	rels := make([]*debindex.Release, len(repos))
	ih := sha256.New()
	fmt.Fprintf(ih, "kib apt root index 2\narch %s\n%s\n", arch, strings.Join(Packages, " "))
	for i, r := range repos {
		rel, text, err := b.release(ctx, r)
		if err != nil {
			return "", fmt.Errorf("apt root: %s %s: %w", r.URL, r.Suite, err)
		}
		rels[i] = rel
		fmt.Fprintf(ih, "%s\n%x\n", r.Line(), sha256.Sum256(text))
	}
	record := filepath.Join(b.st.Dir(), "apt-roots", hex.EncodeToString(ih.Sum(nil)))
	if data, err := os.ReadFile(record); err == nil {
		if k := strings.TrimSpace(string(data)); isKey(k) && b.st.HasObject(k) {
			return filepath.Join(b.st.ObjectPath(k), "tree"), nil
		}
	}
	var all []debindex.Package
	var bases []string
	for i, r := range repos {
		pkgs, err := b.index(ctx, r, arch, rels[i])
		if err != nil {
			return "", fmt.Errorf("apt root: %s %s: %w", r.URL, r.Suite, err)
		}
		for i := range pkgs {
			// Filename is relative to the repository root (or, flat, to
			// the suite's directory); keep the full URL.
			pkgs[i].Filename = joinURL(repoBase(r), pkgs[i].Filename)
		}
		all = append(all, pkgs...)
		bases = append(bases, r.URL)
	}
	ix := debindex.NewIndex(arch, all)
	pkgs, err := ix.Closure(append(slices.Clone(Packages), ix.Essential()...))
	if err != nil {
		return "", fmt.Errorf("apt root: resolving %s in %s: %w", strings.Join(Packages, ", "), strings.Join(bases, ", "), err)
	}
	key := sha256.New()
	fmt.Fprintf(key, "kib apt root 2\narch %s\n", arch)
	for _, p := range pkgs {
		fmt.Fprintf(key, "%s %s\n", p.SHA256, p.Name)
	}
	k := hex.EncodeToString(key.Sum(nil))
	if b.st.HasObject(k) {
		return filepath.Join(b.st.ObjectPath(k), "tree"), writeRecord(record, k)
	}
	log.Info("bootstrapping the apt root (no apt-get on this host)", "packages", len(pkgs))
	srcs := map[string]string{}
	unpack := stages.DebsUnpack{}
	for _, p := range pkgs {
		p := p
		src, _, err := b.st.Source(ctx, p.SHA256, p.Size, 3, func(ctx context.Context, w io.Writer) error {
			return b.get(ctx, p.Filename, w)
		})
		if err != nil {
			return "", fmt.Errorf("apt root: fetching %s %s: %w", p.Name, p.Version, err)
		}
		srcs[p.SHA256] = src
		unpack.Debs = append(unpack.Debs, p.SHA256)
	}
	dir, _, err := b.st.Object(ctx, k, func(ctx context.Context, dir string) error {
		tree := filepath.Join(dir, "tree")
		if err := os.Mkdir(tree, 0o755); err != nil {
			return err
		}
		if err := unpack.Run(ctx, &stages.Env{Tree: tree, Sources: srcs, Arch: arch, Log: log}); err != nil {
			return err
		}
		for _, f := range depsolve.RootHostFiles {
			if err := os.WriteFile(filepath.Join(tree, f), nil, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("apt root: %w", err)
	}
	log.Info("apt root ready", "packages", len(pkgs), "duration", time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "tree"), writeRecord(record, k)
}

// writeRecord notes that the Release files hashed into record resolve to
// the root with key k.
func writeRecord(record, k string) error {
	if err := os.MkdirAll(filepath.Dir(record), 0o755); err != nil {
		return fmt.Errorf("apt root: %w", err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", record, os.Getpid())
	if err := os.WriteFile(tmp, []byte(k+"\n"), 0o644); err != nil {
		return fmt.Errorf("apt root: %w", err)
	}
	if err := os.Rename(tmp, record); err != nil {
		return fmt.Errorf("apt root: %w", err)
	}
	return nil
}

func isKey(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// repoBase is the URL Filename fields are relative to.
func repoBase(r depsolve.Repo) string {
	if r.Flat() {
		return joinURL(r.URL, r.Suite)
	}
	return r.URL
}

func joinURL(base, rel string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimPrefix(path.Clean("/"+rel), "/")
}

// distURL is the directory of r's Release file.
func distURL(r depsolve.Repo) string {
	if r.Flat() {
		return repoBase(r)
	}
	return joinURL(r.URL, "dists/"+r.Suite)
}

// index returns the packages of r for arch, from indices verified against
// rel, r's verified Release file.
func (b *Bootstrapper) index(ctx context.Context, r depsolve.Repo, arch string, rel *debindex.Release) ([]debindex.Package, error) {
	dist := distURL(r)
	var dirs []string
	if r.Flat() {
		dirs = []string{""}
	} else {
		for _, c := range r.Components {
			dirs = append(dirs, c+"/binary-"+arch+"/")
		}
	}
	var out []debindex.Package
	for _, d := range dirs {
		name, sum, ok := pickIndex(rel, d+"Packages")
		if !ok {
			return nil, fmt.Errorf("the Release file lists no %sPackages index", d)
		}
		var buf bytes.Buffer
		if err := b.get(ctx, joinURL(dist, name), &buf); err != nil {
			return nil, err
		}
		got := sha256.Sum256(buf.Bytes())
		if hex.EncodeToString(got[:]) != sum.SHA256 || int64(buf.Len()) != sum.Size {
			return nil, fmt.Errorf("%s: does not match the Release file's size and sha256", name)
		}
		rd, err := decompress(name, &buf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		pkgs, err := debindex.ParsePackages(rd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, pkgs...)
	}
	return out, nil
}

// pickIndex chooses the compressed form of base the Release lists, as apt
// prefers them.
func pickIndex(rel *debindex.Release, base string) (string, debindex.FileSum, bool) {
	for _, ext := range []string{".xz", ".zst", ".gz", ""} {
		if s, ok := rel.Files[base+ext]; ok {
			return base + ext, s, true
		}
	}
	return "", debindex.FileSum{}, false
}

func decompress(name string, r io.Reader) (io.Reader, error) {
	switch path.Ext(name) {
	case ".xz":
		return xz.NewReader(r)
	case ".gz":
		return gzip.NewReader(r)
	case ".zst":
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	}
	return r, nil
}

// release fetches and verifies r's InRelease (or Release and Release.gpg)
// with r's keyring, unless r is trusted, and returns it parsed and as text.
func (b *Bootstrapper) release(ctx context.Context, r depsolve.Repo) (*debindex.Release, []byte, error) {
	dist := distURL(r)
	var in bytes.Buffer
	inErr := b.get(ctx, joinURL(dist, "InRelease"), &in)
	var text []byte
	switch {
	case r.Trusted && inErr == nil:
		t, err := debindex.PlainInRelease(in.Bytes())
		if err != nil {
			return nil, nil, err
		}
		text = t
	case r.Trusted:
		var rel bytes.Buffer
		if err := b.get(ctx, joinURL(dist, "Release"), &rel); err != nil {
			return nil, nil, fmt.Errorf("no InRelease (%v) and no Release: %w", inErr, err)
		}
		text = rel.Bytes()
	default:
		kr, err := keyring(r)
		if err != nil {
			return nil, nil, err
		}
		if inErr == nil {
			if text, err = debindex.VerifyInRelease(kr, in.Bytes()); err != nil {
				return nil, nil, err
			}
			break
		}
		var rel, sig bytes.Buffer
		if err := b.get(ctx, joinURL(dist, "Release"), &rel); err != nil {
			return nil, nil, fmt.Errorf("no InRelease (%v) and no Release: %w", inErr, err)
		}
		if err := b.get(ctx, joinURL(dist, "Release.gpg"), &sig); err != nil {
			return nil, nil, err
		}
		if err := debindex.VerifyDetached(kr, rel.Bytes(), sig.Bytes()); err != nil {
			return nil, nil, err
		}
		text = rel.Bytes()
	}
	rel, err := debindex.ParseRelease(text)
	return rel, text, err
}

// keyring reads r's keyring: the one kib ships, else the signed-by file.
func keyring(r depsolve.Repo) (*debindex.Keyring, error) {
	data := r.Keyring
	if len(data) == 0 {
		if r.SignedBy == "" {
			return nil, errors.New("the repository is neither trusted nor signed-by a keyring")
		}
		var err error
		if data, err = os.ReadFile(r.SignedBy); err != nil {
			return nil, fmt.Errorf("signed-by: %w", err)
		}
	}
	return debindex.ReadKeyring(data)
}

// get writes the content at u (http, https or file) to w.
func (b *Bootstrapper) get(ctx context.Context, u string, w io.Writer) error {
	c := b.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Minute}
	}
	return fetch.Get(ctx, c, u, w)
}
