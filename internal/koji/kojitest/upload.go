package kojitest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/kib-project/kib/internal/adler"
	"github.com/kib-project/kib/internal/koji"
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// uploadPath applies Koji's get_upload_path rules and returns the file's
// path on disk. Callers hold h.mu.
func (h *Hub) uploadPath(s *session, reldir, name string, create bool) (string, error) {
	d, base := path.Split(name)
	if d != "" || base == "" || strings.HasPrefix(base, ".") {
		return "", generic("Invalid upload filename: %s", name)
	}
	clean := path.Clean(reldir)
	if reldir == "" || clean == "." || strings.HasPrefix(clean, "..") || strings.HasPrefix(clean, "/") {
		return "", generic("Invalid upload directory: %s", reldir)
	}
	parts := strings.Split(clean, "/")
	checkUser := true
	if create && parts[0] == "tasks" {
		if len(parts) < 3 {
			return "", generic("Invalid task upload directory: %s", reldir)
		}
		id, err := strconv.Atoi(parts[2])
		if err != nil {
			return "", generic("Invalid task upload directory: %s", reldir)
		}
		ho, err := h.verifyHost(s)
		if err != nil {
			return "", err
		}
		if err := h.assertHost(id, ho); err != nil {
			return "", err
		}
		checkUser = false
	}
	udir := filepath.Join(h.Dir, "work", filepath.FromSlash(clean))
	if create {
		if err := os.MkdirAll(udir, 0o755); err != nil {
			return "", err
		}
		if checkUser {
			uf := filepath.Join(udir, ".user")
			b, err := os.ReadFile(uf)
			switch {
			case err == nil:
				if strings.TrimSpace(string(b)) != strconv.Itoa(s.user.ID) {
					return "", generic("Invalid upload directory, not owner: %s", reldir)
				}
			case errors.Is(err, fs.ErrNotExist):
				if err := os.WriteFile(uf, []byte(strconv.Itoa(s.user.ID)), 0o644); err != nil {
					return "", err
				}
			default:
				return "", err
			}
		}
	}
	return filepath.Join(udir, base), nil
}

func newHash(kind string) (hash.Hash, error) {
	switch kind {
	case "adler32":
		return adler.New(), nil
	case "md5":
		return md5.New(), nil
	case "sha256":
		return sha256.New(), nil
	}
	return nil, generic("Unsupported verify type: %s", kind)
}

// handleUpload is Koji's raw upload handler (handle_upload).
func (h *Hub) handleUpload(r *http.Request, body io.Reader) (any, error) {
	q := r.URL.Query()
	h.mu.Lock()
	s, _, err := h.lookupSession(r, "rawUpload")
	if err == nil && s == nil {
		err = authError("Not logged-in")
	}
	var fn string
	if err == nil {
		if q.Get("fileverify") == "" {
			err = pyError("TypeError", "unsupported fileverify None")
		} else if q.Get("volume") != "" && q.Get("volume") != "DEFAULT" {
			err = generic("No such volume: %s", q.Get("volume"))
		} else {
			fn, err = h.uploadPath(s, q.Get("filepath"), q.Get("filename"), true)
		}
	}
	if err == nil {
		if h.fileLocks == nil {
			h.fileLocks = map[string]bool{}
		}
		if h.fileLocks[fn] {
			err = &koji.Fault{Code: koji.CodeLock, String: "File locked: " + fn}
		} else {
			h.fileLocks[fn] = true
		}
	}
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	defer func() {
		h.mu.Lock()
		delete(h.fileLocks, fn)
		h.mu.Unlock()
	}()

	hs, err := newHash(q.Get("fileverify"))
	if err != nil {
		return nil, err
	}
	offset, err := strconv.ParseInt(q.Get("offset"), 10, 64)
	if err != nil {
		offset = 0
	}
	overwrite := q.Get("overwrite") != "" && q.Get("overwrite") != "0" && !strings.EqualFold(q.Get("overwrite"), "false")
	if st, err := os.Lstat(fn); err == nil {
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			return nil, generic("destination is a symlink: %s", fn)
		case !st.Mode().IsRegular():
			return nil, generic("destination not a file: %s", fn)
		case offset == 0 && !overwrite:
			return nil, generic("upload path exists: %s", fn)
		}
	}
	f, err := os.OpenFile(fn, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if overwrite && offset >= 0 {
		if err := f.Truncate(offset); err != nil {
			return nil, err
		}
	}
	if offset == -1 {
		if offset, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, err
		}
	} else if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	n, err := io.CopyBuffer(io.MultiWriter(f, hs), body, *bp)
	if err != nil {
		return nil, fmt.Errorf("reading upload: %w", err)
	}
	if !overwrite {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if st.Size() != offset+n {
			return nil, generic("Incorrect upload length for %s - Expected %d, actual %d", fn, offset+n, st.Size())
		}
	}
	return map[string]any{"size": n, "fileverify": q.Get("fileverify"), "offset": offset, "hexdigest": hex.EncodeToString(hs.Sum(nil))}, nil
}

// checkUpload is checkUpload(path, name, verify=None, tail=None, volume=None).
func (c *call) checkUpload() (any, error) {
	if err := c.arity(2, 5); err != nil {
		return nil, err
	}
	if _, err := c.user(); err != nil {
		return nil, err
	}
	dir, err := c.str(0, "path")
	if err != nil {
		return nil, err
	}
	name, err := c.str(1, "name")
	if err != nil {
		return nil, err
	}
	fn, err := c.h.uploadPath(c.sess, dir, name, false)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(fn)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	res := map[string]any{"size": st.Size(), "mtime": float64(st.ModTime().UnixNano()) / 1e9}
	verify, _ := c.opt(2, "verify").(string)
	if verify == "" {
		return res, nil
	}
	hs, err := newHash(verify)
	if err != nil {
		return nil, err
	}
	var r io.Reader = f
	var length int64 = st.Size()
	if tail := c.opt(3, "tail"); tail != nil {
		t, err := toInt(tail, "tail")
		if err != nil {
			return nil, err
		}
		if int64(t) < st.Size() {
			if _, err := f.Seek(st.Size()-int64(t), io.SeekStart); err != nil {
				return nil, err
			}
			length = int64(t)
		}
	}
	if _, err := io.Copy(hs, r); err != nil {
		return nil, err
	}
	res["sumlength"] = length
	res["hexdigest"] = hex.EncodeToString(hs.Sum(nil))
	return res, nil
}
