package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/stageopt"
)

const testSDE = 1716163200

func newEnv(t testing.TB) *Env {
	t.Helper()
	base := t.TempDir()
	env := &Env{Out: filepath.Join(base, "out"), Work: filepath.Join(base, "work"),
		Inputs: map[string]string{}, SourceDateEpoch: testSDE, Seed: 42, Arch: "amd64"}
	for _, d := range []string{env.Out, env.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// newStage decodes opts through the registry, as the engine does.
func newStage(t testing.TB, typ string, opts any) Stage {
	t.Helper()
	raw, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(typ, raw)
	if err != nil {
		t.Fatalf("New(%s, %s): %v", typ, raw, err)
	}
	return s
}

func runStage(t testing.TB, env *Env, typ string, opts any) {
	t.Helper()
	if err := newStage(t, typ, opts).Run(context.Background(), env); err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
}

func cmdOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// makeTree writes a small root tree: a fake kernel and initrd behind
// Debian's /vmlinuz and /initrd.img links, a hard link, a symlink and some
// directories. Every mtime is SOURCE_DATE_EPOCH; atimes and ctimes are
// whatever the host gives, as after extracting a tar.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"etc/hostname":                  "kibtest\n",
		"etc/passwd":                    "root:x:0:0:root:/root:/bin/bash\nkib:x:1000:1000::/home/kib:/bin/bash\n",
		"boot/vmlinuz-6.1.0-1-amd64":    strings.Repeat("kernel", 1000),
		"boot/initrd.img-6.1.0-1-amd64": strings.Repeat("initrd", 1000),
		"usr/share/doc/a/copyright":     "free\n",
		"home/kib/.profile":             "# profile\n",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{"vmlinuz": "boot/vmlinuz-6.1.0-1-amd64", "initrd.img": "boot/initrd.img-6.1.0-1-amd64"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "etc/hostname"), filepath.Join(dir, "etc/hostname.hard")); err != nil {
		t.Fatal(err)
	}
	sde := time.Unix(testSDE, 0)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, time.Time{}, sde)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Walk again bottom-up so directory mtimes stay fixed.
	var dirs []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i], time.Time{}, sde); err != nil {
			t.Fatal(err)
		}
	}
	// os.Chtimes follows links; touch -h sets the links' own times.
	for name := range links {
		cmdOut(t, "touch", "-h", "-d", fmt.Sprintf("@%d", testSDE), filepath.Join(dir, name))
	}
}

// smallDisk is a 64 MiB hybrid disk plan over the tree pipeline "os".
func smallDisk(seed int64) stageopt.HybridDisk {
	return stageopt.HybridDisk{Filename: "disk.raw", Size: 128 * MiB, ESPSize: 40 * MiB, Seed: seed, Source: "os",
		KernelOptions: "ro console=ttyS0,115200"}
}

func assemble(t *testing.T, env *Env, h stageopt.HybridDisk) {
	t.Helper()
	plan, err := h.Plan()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan {
		runStage(t, env, s.Type, s.Options)
	}
}

func TestGPT(t *testing.T) {
	env := newEnv(t)
	h := smallDisk(7)
	plan, err := h.Plan()
	if err != nil {
		t.Fatal(err)
	}
	opts := plan[0].Options.(*stageopt.GPT)
	opts.Partitions[0].LegacyBIOSBootable = true
	runStage(t, env, "gpt", opts)
	disk := filepath.Join(env.Out, "disk.raw")
	var got struct {
		PartitionTable struct {
			Label      string `json:"label"`
			ID         string `json:"id"`
			SectorSize int    `json:"sectorsize"`
			Partitions []struct {
				Start, Size uint64
				Type, UUID  string
				Name        string
				Attrs       string
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(cmdOut(t, "sfdisk", "-J", disk)), &got); err != nil {
		t.Fatal(err)
	}
	pt := got.PartitionTable
	if pt.Label != "gpt" || !strings.EqualFold(pt.ID, opts.UUID) || pt.SectorSize != 512 {
		t.Errorf("table: label %q id %q sector size %d, want gpt %s 512", pt.Label, pt.ID, pt.SectorSize, opts.UUID)
	}
	if len(pt.Partitions) != len(opts.Partitions) {
		t.Fatalf("%d partitions, want %d", len(pt.Partitions), len(opts.Partitions))
	}
	for i, p := range pt.Partitions {
		w := opts.Partitions[i]
		if p.Start*512 != w.Start || p.Size*512 != w.Size || !strings.EqualFold(p.Type, w.Type) || !strings.EqualFold(p.UUID, w.UUID) || p.Name != w.Name {
			t.Errorf("partition %d = %+v, want %+v", i, p, w)
		}
	}
	if pt.Partitions[0].Attrs != "LegacyBIOSBootable" {
		t.Errorf("partition 0 attrs = %q", pt.Partitions[0].Attrs)
	}
	fi, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(h.Size) {
		t.Errorf("size %d, want %d", fi.Size(), h.Size)
	}
	if used := allocated(t, disk); used > MiB {
		t.Errorf("%d bytes allocated for a bare table, want a sparse file", used)
	}
	assertOnly(t, env.Out, "disk.raw")
}

// allocated returns the bytes a file really uses on disk.
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	out := strings.TrimSpace(cmdOut(t, "stat", "-c", "%b %B", p))
	var blocks, bsize int64
	if _, err := fmt.Sscan(out, &blocks, &bsize); err != nil {
		t.Fatal(err)
	}
	return blocks * bsize
}

// assertOnly checks that dir holds exactly the names (no partial files).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
