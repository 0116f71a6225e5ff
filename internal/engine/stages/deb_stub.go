package stages

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kib-project/kib/internal/debindex"
)

// mmdebstrap's custom variant extracts every package into the tree before
// dpkg installs them all, so that the Essential packages' maintainer
// scripts find a shell and the tools they need; dpkg then unpacks every
// package again. Only the packages dpkg needs before it unpacks the rest
// must be there: the Essential ones and, transitively, what they and any
// package pre-depend and depend on (every alternative, to be generous).
// The others are presented to the extraction as stubs: the same control
// member, and a data.tar of the original's directories and symlinks only,
// so the extraction makes the same directories with the same owners, modes
// and times as before, and dpkg later changes the same ones (it renames
// every file and symlink it unpacks into place, which stamps the directory;
// the image keeps the times of the directories it does not touch, such as
// /usr/share/doc, whose entries of symlinks all existed before). After the extraction, mmdebstrap's extract hook puts the real
// packages in their place in the pool, and dpkg installs those.

// stubDebFormat is part of the store key of every stub: change it when the
// bytes written change.
const stubDebFormat = "kib stub deb 2"

// extractSet returns the names of the packages of pkgs that the extraction
// needs whole.
func extractSet(pkgs []debindex.Package) map[string]bool {
	byName := map[string]*debindex.Package{}
	providers := map[string][]string{}
	for i := range pkgs {
		p := &pkgs[i]
		byName[p.Name] = p
		for _, pv := range p.Provides {
			providers[pv.Name] = append(providers[pv.Name], p.Name)
		}
	}
	need := map[string]bool{}
	var queue []string
	add := func(name string) {
		for _, n := range append([]string{name}, providers[name]...) {
			if byName[n] != nil && !need[n] {
				need[n] = true
				queue = append(queue, n)
			}
		}
	}
	addGroups := func(groups [][]debindex.Dep) {
		for _, g := range groups {
			for _, d := range g {
				add(d.Name)
			}
		}
	}
	for _, p := range pkgs {
		if p.Essential {
			add(p.Name)
		}
		addGroups(p.PreDepends)
	}
	for len(queue) > 0 {
		p := byName[queue[0]]
		queue = queue[1:]
		addGroups(p.PreDepends)
		addGroups(p.Depends)
	}
	return need
}

// stubDeb returns the path of the stub of the package at src (an ar
// archive with data.tar uncompressed), whose digest is sum, made in
// env.Cache.
func stubDeb(ctx context.Context, env *Env, sum, src string) (string, error) {
	members, err := readArMembers(src)
	if err != nil {
		return "", err
	}
	if members[2].name != "data.tar" {
		return "", fmt.Errorf("%s: data member is %s, not an uncompressed data.tar", src, members[2].name)
	}
	key := sha256.Sum256([]byte(stubDebFormat + "\n" + sum))
	dir, err := env.Cache(ctx, hex.EncodeToString(key[:]), func(ctx context.Context, dir string) error {
		return writeStubDeb(src, members, filepath.Join(dir, "deb"))
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "deb"), nil
}

// writeStubDeb writes the stub of src to dst.
func writeStubDeb(src string, members []arMember, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	// The directories' and symlinks' tar, in memory: headers only.
	var data bytes.Buffer
	tw := tar.NewWriter(&data)
	// A section reader seeks past the files' contents.
	tr := tar.NewReader(io.NewSectionReader(in, members[2].offset, members[2].size))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: data.tar: %w", src, err)
		}
		if h.Typeflag != tar.TypeDir && h.Typeflag != tar.TypeSymlink {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: data.tar: %s: %w", src, h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	hdr, err := dataHeader(members[2], members[2].name, int64(data.Len()))
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	err = func() error {
		w := bufio.NewWriter(out)
		if err := writeDebHead(w, in, members); err != nil {
			return err
		}
		w.Write(hdr[:])
		w.Write(data.Bytes())
		if err := arPad(w, int64(data.Len())); err != nil {
			return err
		}
		return w.Flush()
	}()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, os.Remove(dst))
	}
	return nil
}
