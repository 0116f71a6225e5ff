package kojitest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

// TopURL is the hub's file root, Koji's "topurl": Hub.Dir served read-only
// over HTTP, as the stock Koji httpd configuration serves KojiDir at
// /kojifiles ("Alias /kojifiles /mnt/koji/"). A build's files are at
// TopURL/packages/<name>/<version>/<release>/..., images under images/.
func (h *Hub) TopURL() string { return h.Server.URL + "/kojifiles" }

// filesHandler serves Hub.Dir like httpd does: GET and HEAD only, files and
// directory listings, no writes.
func (h *Hub) filesHandler() http.Handler {
	fs := http.StripPrefix("/kojifiles", http.FileServer(http.Dir(h.Dir)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		fs.ServeHTTP(w, r)
	})
}

// ReplaceArchive puts the content of src in place of the archive filename
// of build buildID, on disk and in the archive record (size, sha256). It
// stands for an image in Koji that is not the one its build imported (a
// file replaced on the volume and in the database); tests use it to check
// that such an image is found out. With keepRecord the record stays as it
// was, so only the file served at TopURL differs from it.
func (h *Hub) ReplaceArchive(buildID int, filename, src string, keepRecord bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.builds[buildID]
	if b == nil {
		return fmt.Errorf("no build %d", buildID)
	}
	var a *archive
	for _, x := range h.archives {
		if x.buildID == buildID && x.filename == filename {
			a = x
		}
	}
	if a == nil {
		return fmt.Errorf("build %d has no archive %q", buildID, filename)
	}
	sub := filepath.Join("files", a.btype)
	if a.btype == "image" {
		sub = "images"
	}
	dest := filepath.Join(h.Dir, "packages", b.name, b.version, b.release, sub, filename)
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dest + ".replacing"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	hs := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, hs), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if !keepRecord {
		a.size, a.checksum, a.ctype = n, hex.EncodeToString(hs.Sum(nil)), checksumTypes["sha256"]
	}
	return nil
}
