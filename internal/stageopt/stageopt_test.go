package stageopt

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

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

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct{ typ, opts, want string }{
		{"nope", `{}`, `unknown stage type "nope"`},
		{"hostname", `{"hostname":"a","x":1}`, `unknown field "x"`},
		{"hostname", `{"hostname":""}`, "hostname:"},
		{"tar", `{"source":"os","filename":"a/b","compression":"xz"}`, "filename:"},
		{"tar", `{"source":"os","filename":"a","compression":"zip"}`, "compression:"},
		{"mmdebstrap", `{"suite":"bookworm","packages":["a"],"debs":["xyz"]}`, "debs[0]"},
		{"files", `{"files":[{"path":"etc","data":"","mode":"0644"}]}`, "files[0].path"},
		{"files", `{"files":[{"path":"/etc/x","data":"","mode":"999"}]}`, "files[0].mode"},
		{"timezone", `{"zone":"../../etc/passwd"}`, "zone:"},
		{"debian-finalize", `{"sources":["rm -rf /"]}`, "sources[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.want, func(t *testing.T) {
			_, err := New(tt.typ, json.RawMessage(tt.opts))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// smallDisk is a 128 MiB hybrid disk plan over the tree pipeline "os".
func smallDisk(seed int64) HybridDisk {
	return HybridDisk{Filename: "disk.raw", Size: 128 * MiB, ESPSize: 40 * MiB, Seed: seed, Source: "os",
		KernelOptions: "ro console=ttyS0,115200"}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
