// Command uploadfixture writes an image as `kib build` leaves it (the file
// and build-info.json in one directory) for bench/upload.sh: a qcow2 of
// random bytes, or a container image as an OCI archive of random layers.
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kib-project/kib/internal/buildinfo"
)

func main() {
	typ := flag.String("type", "qcow2", "qcow2 or container")
	size := flag.Int64("size", 2<<30, "bytes (qcow2) or bytes per layer (container)")
	layers := flag.Int64("layers", 4, "layers of a container")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	name := "disk.qcow2"
	if *typ == "container" {
		name = "container.tar"
		writeContainer(filepath.Join(*out, name), *size, *layers)
	} else {
		writeRandom(filepath.Join(*out, name), *size)
	}
	f, err := os.Open(filepath.Join(*out, name))
	if err != nil {
		log.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		log.Fatal(err)
	}
	bi := buildinfo.BuildInfo{Arch: "x86_64", BootMode: "none", ExportName: *typ, ExportFilename: name, KibVersion: "bench",
		SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Distro: "debian-12", ImageType: *typ}
	if *typ == "qcow2" {
		bi.BootMode = "hybrid"
	}
	b, _ := json.MarshalIndent(bi, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "build-info.json"), b, 0o644); err != nil {
		log.Fatal(err)
	}
}

func writeRandom(path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(f, r, size); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func writeContainer(path string, layerSize, layers int64) {
	img, err := random.Image(layerSize, layers)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "oci-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		log.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		log.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		log.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
