// Package store is kib's content-addressed cache on disk: sources by sha256,
// pipeline outputs by the hash of the pipeline and everything before it. It is
// safe for several processes at once: every entry is produced under a file
// lock, in a temporary directory, and renamed into place when complete.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Store is a cache directory. Its methods are safe for concurrent use by
// goroutines and processes.
type Store struct {
	dir string
}

var keyRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Open opens (creating if needed) the store at dir and removes temporary
// entries left by processes that died.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: abs}
	for _, d := range []string{"sources/sha256", "objects", "tmp", "locks"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("store %s: %w", abs, err)
		}
	}
	s.sweep()
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// SourcePath returns where the source with sha256 digest sum lives.
func (s *Store) SourcePath(sum string) string {
	return filepath.Join(s.dir, "sources/sha256", sum)
}

// ChecksumError reports content that does not match its expected digest.
type ChecksumError struct {
	Name      string
	Want, Got string
	WantSize  int64
	GotSize   int64
}

func (e *ChecksumError) Error() string {
	if e.WantSize != e.GotSize {
		return fmt.Sprintf("%s: size %d, want %d", e.Name, e.GotSize, e.WantSize)
	}
	return fmt.Sprintf("%s: sha256 %s, want %s", e.Name, e.Got, e.Want)
}

// Source returns the path of the verified source sum of the given size,
// calling fetch to download it when the store lacks it or holds a corrupted
// or truncated copy. fetch writes the content to w; it may be called again if
// what it wrote does not verify, up to tries times in all.
func (s *Store) Source(ctx context.Context, sum string, size int64, tries int, fetch func(ctx context.Context, w io.Writer) error) (path string, fetched bool, err error) {
	if !keyRE.MatchString(sum) {
		return "", false, fmt.Errorf("source digest %q: not a lower-case sha256 hex digest", sum)
	}
	path = s.SourcePath(sum)
	unlock, err := s.lock(ctx, "src-"+sum)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if err := verify(path, sum, size); err == nil {
		return path, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		// Corrupted or truncated: drop it and fetch again.
		_ = os.Remove(path)
	}
	if tries < 1 {
		tries = 1
	}
	var lastErr error
	for i := 0; i < tries; i++ {
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		lastErr = s.fetchOnce(ctx, path, sum, size, fetch)
		if lastErr == nil {
			return path, true, nil
		}
	}
	return "", false, lastErr
}

func (s *Store) fetchOnce(ctx context.Context, path, sum string, size int64, fetch func(context.Context, io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "src-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := fetch(ctx, cw); err != nil {
		return err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != sum || cw.n != size {
		return &ChecksumError{Name: sum, Want: sum, Got: got, WantSize: size, GotSize: cw.n}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o444); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// verify checks the file at path against sum and size.
func verify(path, sum string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != size {
		return &ChecksumError{Name: path, Want: sum, WantSize: size, GotSize: st.Size()}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return &ChecksumError{Name: path, Want: sum, Got: got, WantSize: size, GotSize: size}
	}
	return nil
}

// ObjectPath returns where the pipeline output with key lives.
func (s *Store) ObjectPath(key string) string { return filepath.Join(s.dir, "objects", key) }

// HasObject reports whether the output with key is in the store.
func (s *Store) HasObject(key string) bool {
	_, err := os.Stat(filepath.Join(s.ObjectPath(key), ".complete"))
	return err == nil
}

// Object returns the directory of the pipeline output with key, calling build
// to produce it (into an empty directory) if the store lacks it. When several
// processes ask for the same key at once, one builds and the others wait and
// reuse its result.
func (s *Store) Object(ctx context.Context, key string, build func(ctx context.Context, dir string) error) (path string, built bool, err error) {
	if !keyRE.MatchString(key) {
		return "", false, fmt.Errorf("object key %q: not a sha256 hex digest", key)
	}
	path = s.ObjectPath(key)
	if s.HasObject(key) {
		return path, false, nil
	}
	unlock, err := s.lock(ctx, "obj-"+key)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if s.HasObject(key) {
		return path, false, nil
	}
	_ = os.RemoveAll(path) // an incomplete leftover
	tmp, done, err := s.TempDir("obj-" + key[:16])
	if err != nil {
		return "", false, err
	}
	defer done()
	if err := build(ctx, tmp); err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, fmt.Errorf("store: %w", err)
	}
	return path, true, nil
}

// TempDir makes a scratch directory in the store (on the same file system as
// its entries, so results can be renamed into place). done removes it. A
// directory whose process died is removed by the next Open.
func (s *Store) TempDir(prefix string) (dir string, done func(), err error) {
	var name string
	var lf *os.File
	for try := 0; ; try++ {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", nil, err
		}
		name = filepath.Join(s.dir, "tmp", prefix+"-"+hex.EncodeToString(b[:]))
		if lf, err = s.lockNew(name + ".lock"); err != nil {
			return "", nil, err
		}
		if lf != nil {
			break
		}
		if try == 10 {
			return "", nil, fmt.Errorf("store: no temporary directory: its lock file was swept away %d times", try+1)
		}
	}
	if err := os.Mkdir(name, 0o755); err != nil {
		lf.Close()
		os.Remove(lf.Name())
		return "", nil, err
	}
	return name, func() {
		_ = os.RemoveAll(name)
		_ = os.Remove(lf.Name())
		lf.Close()
	}, nil
}

// lockNew creates the lock file path and locks it. Another process's sweep
// may lock the new file first, find it unowned and remove it: then it
// returns nil, and the caller tries another name.
func (s *Store) lockNew(path string) (*os.File, error) {
	lf, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	// Blocking: a sweep holds it only while it looks.
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		lf.Close()
		return nil, err
	}
	var held, named unix.Stat_t
	if err := unix.Fstat(int(lf.Fd()), &held); err != nil {
		lf.Close()
		return nil, err
	}
	if err := unix.Stat(path, &named); err != nil || named.Ino != held.Ino || named.Dev != held.Dev {
		lf.Close()
		return nil, nil
	}
	return lf, nil
}

// sweep removes temporary directories whose owners are gone.
func (s *Store) sweep() {
	tmp := filepath.Join(s.dir, "tmp")
	locks, _ := filepath.Glob(filepath.Join(tmp, "*.lock"))
	for _, l := range locks {
		f, err := os.OpenFile(l, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			// A build killed outright leaves its mounts (a tree-copy's
			// overlay) behind: detached first, they take nothing with them.
			detachMounts(strings.TrimSuffix(l, ".lock"))
			_ = os.RemoveAll(strings.TrimSuffix(l, ".lock"))
			_ = os.Remove(l)
		}
		f.Close()
	}
}

// lock takes the named store-wide lock, waiting for other holders; it gives
// up when ctx is done.
func (s *Store) lock(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "locks", name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("store lock %s: %w", name, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file releases the lock if the goroutine gets it later.
		go func() { <-done; f.Close() }()
		return nil, ctx.Err()
	}
}

// detachMounts lazily unmounts every mount at or under dir, deepest first.
func detachMounts(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, mp := range mountsUnder(data, dir) {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
}

// mountsUnder returns the mount points of mountinfo at or under dir,
// deepest first.
func mountsUnder(mountinfo []byte, dir string) []string {
	var out []string
	for line := range strings.SplitSeq(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// A record is a small file an object keeps beside its output, under
// records/NAME, for later builds to find the object by what it holds rather
// than by its key (the mmdebstrap stage records its package set).

// recordNameRE is what a record's name may be.
var recordNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// WriteRecord writes the record name of the object in dir, being built or
// complete; it replaces the record as a whole, so a reader sees the old
// record or the new one.
func WriteRecord(dir, name string, data []byte) error {
	if !recordNameRE.MatchString(name) {
		return fmt.Errorf("store: record name %q: lower-case letters, digits and dashes only", name)
	}
	rdir := filepath.Join(dir, "records")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(rdir, "."+name+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(rdir, name))
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// ReadRecord returns the record name of the object in dir.
func ReadRecord(dir, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(dir, "records", name))
}

// Record is a record of a complete object.
type Record struct {
	// Object is the object's directory.
	Object string
	Data   []byte
}

// Records returns the record name of every complete object that has one,
// in the order of their keys.
func (s *Store) Records(name string) ([]Record, error) {
	if !recordNameRE.MatchString(name) {
		return nil, fmt.Errorf("store: record name %q: lower-case letters, digits and dashes only", name)
	}
	paths, err := filepath.Glob(filepath.Join(s.dir, "objects", "*", "records", name))
	if err != nil {
		return nil, err
	}
	var recs []Record
	for _, p := range paths {
		obj := filepath.Dir(filepath.Dir(p))
		if !keyRE.MatchString(filepath.Base(obj)) || !s.HasObject(filepath.Base(obj)) {
			continue
		}
		data, err := ReadRecord(obj, name)
		if err != nil {
			if os.IsNotExist(err) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("store: %w", err)
		}
		recs = append(recs, Record{Object: obj, Data: data})
	}
	return recs, nil
}
