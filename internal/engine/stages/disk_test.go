package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const testSDE = 1716163200

func newEnv(t *testing.T) *Env {
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
func newStage(t *testing.T, typ string, opts any) Stage {
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

func runStage(t *testing.T, env *Env, typ string, opts any) {
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
func smallDisk(seed int64) HybridDisk {
	return HybridDisk{Filename: "disk.raw", Size: 128 * MiB, ESPSize: 40 * MiB, Seed: seed, Source: "os",
		KernelOptions: "ro console=ttyS0,115200"}
}

func assemble(t *testing.T, env *Env, h HybridDisk) {
	t.Helper()
	plan, err := h.Plan()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan {
		runStage(t, env, s.Type, s.Options)
	}
}

func TestUUIDFromSeed(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct {
		seed    int64
		purpose string
	}{{0, "disk"}, {1, "disk"}, {1, "partition-root"}, {-7, "fs-root"}, {1 << 62, ""}}
	seen := map[string]bool{}
	for _, tt := range tests {
		u := UUIDFromSeed(tt.seed, tt.purpose)
		if !re.MatchString(u) {
			t.Errorf("UUIDFromSeed(%d, %q) = %q, not a v4 UUID", tt.seed, tt.purpose, u)
		}
		if again := UUIDFromSeed(tt.seed, tt.purpose); again != u {
			t.Errorf("UUIDFromSeed(%d, %q) not deterministic: %q then %q", tt.seed, tt.purpose, u, again)
		}
		if seen[u] {
			t.Errorf("UUIDFromSeed(%d, %q) = %q collides", tt.seed, tt.purpose, u)
		}
		seen[u] = true
	}
	if v := VolumeIDFromSeed(1, "fs-esp"); !regexp.MustCompile(`^[0-9A-F]{8}$`).MatchString(v) || v == VolumeIDFromSeed(2, "fs-esp") {
		t.Errorf("VolumeIDFromSeed = %q", v)
	}
}

func TestLayoutPartitions(t *testing.T) {
	tests := []struct {
		name    string
		size    uint64
		sizes   []uint64
		want    []Extent
		wantErr bool
	}{
		{"hybrid", 2048 * MiB, []uint64{MiB, 256 * MiB, 0},
			[]Extent{{MiB, MiB}, {2 * MiB, 256 * MiB}, {258 * MiB, 2047*MiB - 258*MiB}}, false},
		{"unaligned size rounds next start", 64 * MiB, []uint64{MiB + 512, MiB},
			[]Extent{{MiB, MiB + 512}, {3 * MiB, MiB}}, false},
		{"fill not last", 64 * MiB, []uint64{0, MiB}, nil, true},
		{"too small", 4 * MiB, []uint64{MiB, 8 * MiB}, nil, true},
		{"disk not MiB", 4*MiB + 1, []uint64{MiB}, nil, true},
		{"empty disk", 0, []uint64{0}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LayoutPartitions(tt.size, tt.sizes)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !equalExtents(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func equalExtents(a, b []Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOptionsRejected(t *testing.T) {
	good := smallDisk(1)
	plan, err := good.Plan()
	if err != nil {
		t.Fatal(err)
	}
	gpt := *plan[0].Options.(*GPT)
	uuid := UUIDFromSeed(1, "x")
	tests := []struct {
		typ, json, field string
	}{
		{"gpt", `{"filename":"a/b","size":1048576,"uuid":"` + uuid + `","partitions":[]}`, "filename"},
		{"gpt", `{"filename":"d","size":1000,"uuid":"` + uuid + `"}`, "size"},
		{"gpt", `{"filename":"d","size":1048576,"uuid":"nope"}`, "uuid"},
		{"gpt", mustJSON(t, func() *GPT {
			g := gpt
			g.Partitions = append([]GPTPartition(nil), g.Partitions...)
			g.Partitions[1].Start = g.Partitions[0].Start
			return &g
		}()), "partitions[1]"},
		{"gpt", mustJSON(t, func() *GPT {
			g := gpt
			g.Partitions = append([]GPTPartition(nil), g.Partitions...)
			g.Partitions[2].Size += MiB
			return &g
		}()), "partitions[2].size"},
		{"gpt", mustJSON(t, func() *GPT {
			g := gpt
			g.Partitions = append([]GPTPartition(nil), g.Partitions...)
			g.Partitions[2].UUID = g.Partitions[0].UUID
			return &g
		}()), "partitions[2].uuid"},
		{"gpt", mustJSON(t, func() *GPT {
			g := gpt
			g.Partitions = append([]GPTPartition(nil), g.Partitions...)
			g.Partitions[0].Name = `a"b`
			return &g
		}()), "partitions[0].name"},
		{"ext4", `{"filename":"d","source":"os","offset":4096,"size":1000,"uuid":"` + uuid + `","hash_seed":"` + uuid + `"}`, "size"},
		{"ext4", `{"filename":"d","source":"os","offset":4096,"size":4096,"uuid":"` + uuid + `","hash_seed":"x"}`, "hash_seed"},
		{"ext4", `{"filename":"d","offset":4096,"size":4096,"uuid":"` + uuid + `","hash_seed":"` + uuid + `"}`, "source"},
		{"esp", `{"filename":"d","offset":512,"size":1048576,"volume_id":"1234ABCD"}`, "size"},
		{"esp", `{"filename":"d","offset":512,"size":1048576,"volume_id":"1234ABCD","fat_size":16,"label":"lower"}`, "label"},
		{"esp", `{"filename":"d","offset":512,"size":1048576,"volume_id":"XYZ","fat_size":16}`, "volume_id"},
		{"esp", `{"filename":"d","offset":512,"size":1048576,"volume_id":"1234ABCD","fat_size":24}`, "fat_size"},
		{"grub-efi", `{"filename":"d","esp_offset":512,"source":"os","root_uuid":"` + uuid + `","kernel_options":"a;reboot"}`, "kernel_options"},
		{"grub-efi", `{"filename":"d","esp_offset":0,"source":"os","root_uuid":"` + uuid + `"}`, "esp_offset"},
		{"grub-bios", `{"filename":"d","offset":1048576,"size":1048576,"source":"os","root_uuid":"` + uuid + `","kernel":"vmlinuz"}`, "kernel"},
		{"systemd-boot", `{"filename":"d","esp_offset":512,"source":"os","root_uuid":"` + uuid + `","title":"a\nb"}`, "title"},
		{"systemd-boot", `{"filename":"d","esp_offset":512,"source":"os","root_uuid":"x"}`, "root_uuid"},
		{"qemu-img", `{"input_filename":"d","filename":"e","format":"vmdk"}`, "format"},
		{"qemu-img", `{"input_filename":"d","filename":"e","format":"vpc"}`, "uuid"},
		{"qemu-img", `{"input_filename":"d","filename":"d","format":"qcow2"}`, "filename"},
		{"xz", `{"input_filename":"d","filename":"e","level":10}`, "level"},
		{"gce-tar", `{"input_filename":"d","filename":".e"}`, "filename"},
		{"fstab", `{"entries":[{"uuid":"a b","path":"/","vfs_type":"ext4"}]}`, "entries[0].uuid"},
		{"fstab", `{"entries":[{"uuid":"x","path":"boot","vfs_type":"ext4"}]}`, "entries[0].path"},
		{"fstab", `{"entries":[{"uuid":"x","path":"/","vfs_type":"ext4","passno":3}]}`, "entries[0].passno"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.field, func(t *testing.T) {
			_, err := New(tt.typ, json.RawMessage(tt.json))
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("New(%s, %s) = %v, want an *OptionError", tt.typ, tt.json, err)
			}
			if oe.Field != tt.field {
				t.Errorf("field = %q (%v), want %q", oe.Field, err, tt.field)
			}
		})
	}
	if _, err := New("gpt", json.RawMessage(`{"filename":"d","bogus":1}`)); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown field accepted: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGPT(t *testing.T) {
	env := newEnv(t)
	h := smallDisk(7)
	plan, err := h.Plan()
	if err != nil {
		t.Fatal(err)
	}
	opts := plan[0].Options.(*GPT)
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
