package reproduce

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	mib      = 1 << 20
	espStart = 2 * mib
	espSize  = 7 * mib
	rootPart = 9 * mib
	rootSize = 20 * mib
	diskSize = 32 * mib
)

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeDisk makes a GPT disk with a BIOS boot, an ESP (vfat) and an ext4
// root holding /etc/motd and /etc/hostname, as kib's disks are laid out.
func makeDisk(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	if err := os.Truncate(disk, 0); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(diskSize)
	f.Close()
	script := "label: gpt\nlabel-id: 5E1A0C5C-1B2A-4B0E-8E5E-0C0FFEE0D15C\n" +
		"start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=11111111-1111-4111-8111-111111111111, name=\"BIOS boot\"\n" +
		"start=" + strconv.Itoa(espStart/512) + ", size=" + strconv.Itoa(espSize/512) + ", type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=22222222-2222-4222-8222-222222222222, name=\"EFI System\"\n" +
		"start=" + strconv.Itoa(rootPart/512) + ", size=" + strconv.Itoa(rootSize/512) + ", type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=33333333-3333-4333-8333-333333333333, name=\"root\"\n"
	cmd := exec.Command("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("kib\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc/motd"), bytes.Repeat([]byte("built by kib\n"), 1000), 0o644)
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, "-U", "33333333-3333-4333-8333-333333333334",
		"-E", "offset="+strconv.Itoa(rootPart)+",hash_seed=33333333-3333-4333-8333-333333333335", disk, strconv.Itoa(rootSize/1024)+"k")
	return disk
}

func copyFileT(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func patch(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func TestReadGPT(t *testing.T) {
	disk := makeDisk(t)
	f, _ := os.Open(disk)
	defer f.Close()
	parts, err := ReadGPT(f, diskSize)
	if err != nil {
		t.Fatal(err)
	}
	want := []Partition{
		{1, "BIOS boot", BIOSBootType, mib, 2 * mib},
		{2, "EFI System", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", espStart, espStart + espSize},
		{3, "root", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", rootPart, rootPart + rootSize},
	}
	if len(parts) != len(want) {
		t.Fatalf("got %+v", parts)
	}
	for i := range want {
		if parts[i] != want[i] {
			t.Errorf("partition %d: got %+v, want %+v", i+1, parts[i], want[i])
		}
	}
	// A flipped byte in the entries fails the CRC.
	raw, _ := os.ReadFile(disk)
	raw[2*512+60] ^= 1
	if _, err := ReadGPT(bytes.NewReader(raw), diskSize); err == nil || !strings.Contains(err.Error(), "CRC32") {
		t.Errorf("corrupt entries: err = %v", err)
	}
}

func TestCompareDisk(t *testing.T) {
	ctx := context.Background()
	a := makeDisk(t)
	spec := a + "?offset=" + strconv.Itoa(rootPart)
	// Where /etc/motd's second block is, in bytes from the disk's start.
	bmap := strings.TrimSpace(run(t, "debugfs", "-R", "bmap /etc/motd 1", spec))
	blk, err := strconv.ParseInt(bmap[strings.LastIndex(bmap, "\n")+1:], 10, 64)
	if err != nil {
		t.Fatalf("bmap: %q", bmap)
	}
	motd := rootPart + blk*4096 + 100
	espFile := filepath.Join(t.TempDir(), "grub.cfg")
	os.WriteFile(espFile, []byte("set timeout=1\n"), 0o644)
	tests := []struct {
		name   string
		off    int64
		want   string
		wantFS string
		part   int
		mutate func(t *testing.T, disk string)
	}{
		{"identical", -1, "", "", 0, nil},
		{"file in ext4", motd, "/etc/motd", "ext4", 3, nil},
		{"ext4 superblock", rootPart + 1024 + 100, "block 0: file system metadata or free space; every file is the same", "ext4", 3, nil},
		{"esp free space", espStart + 3000*1024, "every file is the same", "vfat", 2, nil},
		{"bios boot", mib + 10, "BIOS boot partition", "", 1, nil},
		{"mbr", 440, "protective MBR", "", 0, nil},
		// The inode table, not a file's block, differs: the trees say what.
		{"ext4 mode", -1, "/etc/hostname|mode -rw-r--r-- in Koji, -rw------- reproduced", "ext4", 3, func(t *testing.T, disk string) {
			run(t, "debugfs", "-w", "-R", "sif /etc/hostname mode 0100600", disk+"?offset="+strconv.Itoa(rootPart))
		}},
		{"vfat file", -1, "/EFI/BOOT/grub.cfg|content differs from byte 12", "vfat", 2, func(t *testing.T, disk string) {
			os.WriteFile(espFile, []byte("set timeout=5\n"), 0o644)
			run(t, "mcopy", "-o", "-m", "-i", disk+"@@"+strconv.Itoa(espStart), espFile, "::/EFI/BOOT/grub.cfg")
		}},
	}
	run(t, "mkfs.vfat", "--offset", strconv.Itoa(espStart/512), "-i", "12345678", a, strconv.Itoa(espSize/1024))
	run(t, "mmd", "-i", a+"@@"+strconv.Itoa(espStart), "::/EFI", "::/EFI/BOOT")
	run(t, "mcopy", "-m", "-i", a+"@@"+strconv.Itoa(espStart), espFile, "::/EFI/BOOT/grub.cfg")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filepath.Join(t.TempDir(), "b.raw")
			copyFileT(t, a, b)
			if tt.off >= 0 {
				patch(t, b, tt.off, []byte("XYZ"))
			}
			if tt.mutate != nil {
				tt.mutate(t, b)
			}
			d, err := CompareDisk(ctx, a, b, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if tt.off < 0 && tt.mutate == nil {
				if d != nil {
					t.Fatalf("got %v, want identical", d)
				}
				return
			}
			if d == nil {
				t.Fatal("no difference found")
			}
			s := d.String()
			entry, detail, split := strings.Cut(tt.want, "|")
			if split && (d.Entry != entry || !strings.Contains(d.Detail, detail)) {
				t.Errorf("got entry %q, detail %q; want %q, %q", d.Entry, d.Detail, entry, detail)
			}
			if d.Partition != tt.part || d.FS != tt.wantFS || (!split && !strings.Contains(s, tt.want)) {
				t.Errorf("got %q (partition %d, fs %q), want partition %d, fs %q, mentioning %q", s, d.Partition, d.FS, tt.part, tt.wantFS, tt.want)
			}
			if tt.mutate != nil {
				return // the offset is wherever the tool wrote
			}
			wantOff := tt.off
			if tt.part == 3 {
				wantOff -= rootPart
			}
			if tt.part == 2 {
				wantOff -= espStart
			}
			if tt.part == 1 {
				wantOff -= mib
			}
			if d.Offset != wantOff {
				t.Errorf("offset %d, want %d", d.Offset, wantOff)
			}
		})
	}
}

func TestCompareFormats(t *testing.T) {
	ctx := context.Background()
	a := makeDisk(t)
	b := filepath.Join(t.TempDir(), "b.raw")
	copyFileT(t, a, b)
	spec := a + "?offset=" + strconv.Itoa(rootPart)
	bmap := strings.TrimSpace(run(t, "debugfs", "-R", "bmap /etc/hostname 0", spec))
	blk, _ := strconv.ParseInt(bmap[strings.LastIndex(bmap, "\n")+1:], 10, 64)
	patch(t, b, rootPart+blk*4096, []byte("bik"))
	dir := t.TempDir()
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", a, filepath.Join(dir, "a.qcow2"))
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", b, filepath.Join(dir, "b.qcow2"))
	d, err := Compare(ctx, FormatOf("disk.qcow2"), filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil || d.Entry != "/etc/hostname" || d.Partition != 3 {
		t.Errorf("qcow2: got %v, want /etc/hostname in partition 3", d)
	}
	// A GCE tarball holds disk.raw: the comparison goes into the disk.
	tarOf := func(raw string) string {
		data, _ := os.ReadFile(raw)
		p := filepath.Join(t.TempDir(), "image.tar.gz")
		os.WriteFile(p, makeTar(t, "gz", entry{name: "disk.raw", body: string(data)}), 0o644)
		return p
	}
	d, err = Compare(ctx, FormatOf("image.tar.gz"), tarOf(a), tarOf(b), dir)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil || d.Entry != "/etc/hostname" || d.Member != "disk.raw" {
		t.Errorf("gce: got %v, want /etc/hostname in disk.raw", d)
	}
	if got := d.String(); !strings.Contains(got, "in disk.raw") || !strings.Contains(got, `partition 3 "root" (ext4)`) {
		t.Errorf("gce: String() = %q", got)
	}
}

func FuzzReadGPT(f *testing.F) {
	disk := makeDisk(f)
	raw, _ := os.ReadFile(disk)
	f.Add(raw[:64*512])
	f.Add(raw[:2*512])
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := ReadGPT(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, p := range parts {
			if p.Start < 0 || p.End > int64(len(data)) || p.Start >= p.End {
				t.Fatalf("partition %+v is not on a %d-byte disk", p, len(data))
			}
		}
	})
}
