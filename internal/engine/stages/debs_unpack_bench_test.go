package stages

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDebsUnpackBuildRoot unpacks a manifest's build root: the packages
// of KIB_BENCH_MANIFEST's sources.build_debs, read from the store's sources
// at KIB_BENCH_SOURCES (e.g. ~/.cache/kib/store/sources/sha256), into a tree
// under KIB_BENCH_DIR (default the test's temporary directory).
func BenchmarkDebsUnpackBuildRoot(b *testing.B) {
	mf, srcDir := os.Getenv("KIB_BENCH_MANIFEST"), os.Getenv("KIB_BENCH_SOURCES")
	if mf == "" || srcDir == "" {
		b.Skip("set KIB_BENCH_MANIFEST and KIB_BENCH_SOURCES")
	}
	data, err := os.ReadFile(mf)
	if err != nil {
		b.Fatal(err)
	}
	var m struct {
		Sources struct {
			BuildDebs []struct {
				SHA256 string `json:"sha256"`
			} `json:"build_debs"`
		} `json:"sources"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		b.Fatal(err)
	}
	o := DebsUnpack{Alternatives: []string{"/usr/bin/awk=/usr/bin/mawk"}}
	srcs := map[string]string{}
	for _, d := range m.Sources.BuildDebs {
		o.Debs = append(o.Debs, d.SHA256)
		srcs[d.SHA256] = filepath.Join(srcDir, d.SHA256)
	}
	dir := os.Getenv("KIB_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	for i := 0; b.Loop(); i++ {
		tree, err := os.MkdirTemp(dir, "tree-")
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Run(context.Background(), &Env{Tree: tree, Arch: "amd64", Sources: srcs}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(tree)
		b.StartTimer()
	}
}
