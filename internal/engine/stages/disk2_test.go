package stages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/sparse"
	"github.com/kib-project/kib/internal/stageopt"
)

// assembled builds the small hybrid disk from a fresh tree and returns the
// env, plan and disk path.
func assembled(t *testing.T, seed int64) (*Env, stageopt.HybridDisk, string) {
	t.Helper()
	env := newEnv(t)
	tree := filepath.Join(t.TempDir(), "tree")
	makeTree(t, tree)
	env.Inputs["os"] = tree
	h := smallDisk(seed)
	assemble(t, env, h)
	return env, h, filepath.Join(env.Out, h.Filename)
}

func TestExt4(t *testing.T) {
	env, h, disk := assembled(t, 3)
	ext, _ := h.Layout()
	dev := fmt.Sprintf("%s?offset=%d", disk, ext[2].Start)
	hdr := cmdOut(t, "dumpe2fs", "-h", dev)
	for _, want := range []string{
		"Filesystem UUID:          " + h.RootUUID(),
		"Directory Hash Seed:      " + stageopt.UUIDFromSeed(h.Seed, "fs-root-hash-seed"),
		"Filesystem volume name:   root",
		"Block size:               4096",
		"Filesystem created:       Mon May 20 00:00:00 2024",
		"Block count:              " + fmt.Sprint(ext[2].Size/4096),
	} {
		if !strings.Contains(hdr, want) {
			t.Errorf("dumpe2fs -h lacks %q", want)
		}
	}
	if got := cmdOut(t, "debugfs", "-R", "cat /etc/hostname", dev); got != "kibtest\n" {
		t.Errorf("/etc/hostname = %q", got)
	}
	for _, p := range []string{"/etc/hostname", "/etc", "/", "/vmlinuz", "/lost+found", "/home/kib/.profile"} {
		st := cmdOut(t, "debugfs", "-R", "stat "+p, dev)
		for _, f := range []string{"ctime", "atime", "mtime", "crtime"} {
			want := fmt.Sprintf("%s: 0x%08x:00000000", f, testSDE)
			if !strings.Contains(st, want) {
				t.Errorf("stat %s: want %q in\n%s", p, want, st)
			}
		}
	}
	if st := cmdOut(t, "debugfs", "-R", "stat /etc/hostname.hard", dev); !strings.Contains(st, "Links: 2") {
		t.Errorf("hard link lost:\n%s", st)
	}
	if out, err := exec.Command("e2fsck", "-fn", dev).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	// The GPT is intact after mkfs wrote into the partition.
	if out := cmdOut(t, "sfdisk", "-d", disk); !strings.Contains(out, "name=\"root\"") {
		t.Errorf("GPT damaged:\n%s", out)
	}
	assertOnly(t, env.Out, "disk.raw")
}

func TestParseUsedInodes(t *testing.T) {
	out := `Inode count:              24
Group descriptor size:    64
Inodes per group:         8

Group 0: (Blocks 0-32767) csum 0x1 [ITABLE_ZEROED]
  Free inodes: 4-6, 8
Group 1: (Blocks 32768-65535) csum 0x2 [INODE_UNINIT]
  Free inodes: 9-16
Group 2: (Blocks 65536-98303) csum 0x3
  Free inodes: 
`
	got, err := parseUsedInodes([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 2, 3, 7, 17, 18, 19, 20, 21, 22, 23, 24}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{
		"Group 0: x\n  Free inodes: 1-2\n",
		"Inodes per group: 8\nGroup 0: x\n  Free inodes: 7-12\n",
		"Inodes per group: 8\n",
	} {
		if _, err := parseUsedInodes([]byte(bad)); err == nil {
			t.Errorf("parseUsedInodes(%q) succeeded", bad)
		}
	}
}

func TestESPAndGrubEFI(t *testing.T) {
	_, h, disk := assembled(t, 4)
	ext, _ := h.Layout()
	img := fatImage(disk, ext[1].Start)
	list := cmdOut(t, "mdir", "-/", "-i", img, "::/")
	v := h.ESPVolumeID()
	for _, want := range []string{"Volume in drive : is ESP", "Serial Number is " + v[:4] + "-" + v[4:], "BOOTX64  EFI", "2024-05-20"} {
		if !strings.Contains(list, want) {
			t.Errorf("mdir lacks %q:\n%s", want, list)
		}
	}
	info := cmdOut(t, "minfo", "-i", img, "::")
	if !strings.Contains(info, fmt.Sprintf("hidden sectors: %d", ext[1].Start/512)) {
		t.Errorf("minfo: wrong hidden sectors:\n%s", info)
	}
	efi := cmdOut(t, "mtype", "-i", img, "::/EFI/BOOT/BOOTX64.EFI")
	if !strings.HasPrefix(efi, "MZ") {
		t.Errorf("BOOTX64.EFI is not a PE image")
	}
	wantCfg := "search --no-floppy --fs-uuid --set=root " + h.RootUUID() + "\nlinux /vmlinuz root=UUID=" + h.RootUUID() + " ro console=ttyS0,115200\ninitrd /initrd.img\nboot\n"
	if !strings.Contains(efi, wantCfg) {
		t.Errorf("BOOTX64.EFI does not embed the configuration %q", wantCfg)
	}
}

// memDisk is an in-memory disk for installGrubBIOS.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m[off:]), nil }
func (m memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

func TestInstallGrubBIOS(t *testing.T) {
	boot := make([]byte, 512)
	for i := range boot {
		boot[i] = byte(i)
	}
	boot[bootDriveCheck] = 0xeb
	core := make([]byte, 3*512+100) // diskboot sector + 3 more sectors
	for i := range core {
		core[i] = 0xc0
	}
	binary.LittleEndian.PutUint16(core[coreBlocklistLen:], 3)
	newDisk := func() memDisk {
		d := make(memDisk, 4*MiB)
		for i := 440; i < 510; i++ {
			d[i] = 0xee // partition table
		}
		for i := bootBPBStart; i < bootBPBEnd; i++ {
			d[i] = 0xbb
		}
		d[510], d[511] = 0x55, 0xaa
		return d
	}
	t.Run("patches", func(t *testing.T) {
		d := newDisk()
		if err := installGrubBIOS(d, boot, core, MiB, MiB); err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint64(d[bootKernelSector:]); got != 2048 {
			t.Errorf("boot.img kernel sector = %d, want 2048", got)
		}
		if got := binary.LittleEndian.Uint64(d[MiB+coreBlocklist:]); got != 2049 {
			t.Errorf("core.img blocklist start = %d, want 2049", got)
		}
		if d[bootDriveCheck] != 0x90 || d[bootDriveCheck+1] != 0x90 {
			t.Errorf("drive check not nopped: % x", d[bootDriveCheck:bootDriveCheck+2])
		}
		if !bytes.Equal(d[:bootBPBStart], boot[:bootBPBStart]) || !bytes.Equal(d[bootBPBEnd:bootKernelSector], boot[bootBPBEnd:bootKernelSector]) ||
			!bytes.Equal(d[bootDriveCheck+2:440], boot[bootDriveCheck+2:440]) {
			t.Error("boot.img code not copied")
		}
		if !bytes.Equal(d[bootBPBStart:bootBPBEnd], bytes.Repeat([]byte{0xbb}, bootBPBEnd-bootBPBStart)) {
			t.Error("BPB not kept")
		}
		if !bytes.Equal(d[440:510], bytes.Repeat([]byte{0xee}, 70)) || d[510] != 0x55 || d[511] != 0xaa {
			t.Error("partition table or signature changed")
		}
		if !bytes.Equal(d[MiB+512:MiB+len(core)], core[512:]) || !bytes.Equal(d[MiB:MiB+coreBlocklist], core[:coreBlocklist]) {
			t.Error("core.img not written at the partition")
		}
	})
	errs := []struct {
		name string
		mod  func(d memDisk, boot, core []byte) ([]byte, []byte, uint64)
	}{
		{"core too big", func(d memDisk, b, c []byte) ([]byte, []byte, uint64) { return b, c, 1024 }},
		{"no MBR", func(d memDisk, b, c []byte) ([]byte, []byte, uint64) { d[510] = 0; return b, c, MiB }},
		{"bad blocklist", func(d memDisk, b, c []byte) ([]byte, []byte, uint64) {
			c = bytes.Clone(c)
			c[coreBlocklistLen] = 9
			return b, c, MiB
		}},
		{"not boot.img", func(d memDisk, b, c []byte) ([]byte, []byte, uint64) {
			b = bytes.Clone(b)
			b[bootDriveCheck] = 0
			return b, c, MiB
		}},
		{"short boot.img", func(d memDisk, b, c []byte) ([]byte, []byte, uint64) { return b[:400], c, MiB }},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			d := newDisk()
			b, c, size := tt.mod(d, boot, core)
			if err := installGrubBIOS(d, b, c, MiB, size); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestGrubBIOSOnDisk(t *testing.T) {
	_, h, disk := assembled(t, 5)
	ext, _ := h.Layout()
	d, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(defaultBootImg)
	if err != nil {
		t.Fatal(err)
	}
	sector := ext[0].Start / 512
	if got := binary.LittleEndian.Uint64(d[bootKernelSector:]); got != sector {
		t.Errorf("kernel sector %d, want %d", got, sector)
	}
	if !bytes.Equal(d[bootKernelSector+8:bootDriveCheck], boot[bootKernelSector+8:bootDriveCheck]) {
		t.Error("boot.img code not in sector 0")
	}
	if got := binary.LittleEndian.Uint64(d[ext[0].Start+coreBlocklist:]); got != sector+1 {
		t.Errorf("core blocklist start %d, want %d", got, sector+1)
	}
	if d[510] != 0x55 || d[511] != 0xaa || d[450] != 0xee {
		t.Errorf("protective MBR damaged: type 0x%02x", d[450])
	}
	if out := cmdOut(t, "sfdisk", "-d", disk); !strings.Contains(out, "name=\"bios\"") {
		t.Errorf("GPT damaged:\n%s", out)
	}
}

func TestQemuImg(t *testing.T) {
	env := newEnv(t)
	raw := filepath.Join(env.Out, "in.raw")
	// 3 MiB + 4 KiB with data at both ends: the VHD must round up to 4 MiB.
	if err := os.WriteFile(raw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(raw, os.O_RDWR, 0)
	f.Truncate(3*MiB + 4096)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("tail"), 3*MiB+4000)
	f.Close()
	uuid := stageopt.UUIDFromSeed(1, "vhd")
	for _, tt := range []struct {
		format, file string
		opts         *QemuImg
	}{
		{"qcow2", "disk.qcow2", &QemuImg{Conversion: stageopt.Conversion{InputFilename: "in.raw", Filename: "disk.qcow2"}, Format: "qcow2"}},
		{"vpc", "disk.vhd", &QemuImg{Conversion: stageopt.Conversion{InputFilename: "in.raw", Filename: "disk.vhd"}, Format: "vpc", UUID: uuid}},
	} {
		t.Run(tt.format, func(t *testing.T) {
			runStage(t, env, "qemu-img", tt.opts)
			out := filepath.Join(env.Out, tt.file)
			first := fileSHA(t, out)
			cmdOut(t, "qemu-img", "compare", "-f", "raw", "-F", tt.format, raw, out)
			time.Sleep(1100 * time.Millisecond) // a different clock for the second run
			runStage(t, env, "qemu-img", tt.opts)
			if again := fileSHA(t, out); again != first {
				t.Errorf("second conversion differs: %s vs %s", first, again)
			}
		})
	}
	f, err := os.Open(filepath.Join(env.Out, "disk.vhd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ft, err := ReadVHDFooter(f)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	if ft.DiskType != VHDFixed || ft.CurrentSize != 4*MiB || ft.OriginalSize != 4*MiB || fi.Size() != 4*MiB+512 {
		t.Errorf("footer: type %d current %d original %d, file %d; want fixed, 4 MiB, file 4 MiB+512", ft.DiskType, ft.CurrentSize, ft.OriginalSize, fi.Size())
	}
	if used := allocated(t, filepath.Join(env.Out, "disk.vhd")); used > MiB {
		t.Errorf("disk.vhd allocates %d bytes for 8 bytes of data; want it sparse", used)
	}
	if ft.CurrentSize%MiB != 0 {
		t.Errorf("virtual size %d not aligned to 1 MiB", ft.CurrentSize)
	}
	if ft.Timestamp != testSDE-vhdEpoch {
		t.Errorf("timestamp %d, want %d", ft.Timestamp, testSDE-vhdEpoch)
	}
	if got := fmt.Sprintf("%x-%x-%x-%x-%x", ft.UUID[0:4], ft.UUID[4:6], ft.UUID[6:8], ft.UUID[8:10], ft.UUID[10:]); got != uuid {
		t.Errorf("uuid %s, want %s", got, uuid)
	}
	assertOnly(t, env.Out, "disk.qcow2", "disk.vhd", "in.raw")
}

func sparseInput(t *testing.T, env *Env, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(16 * MiB)
	for i := int64(0); i < 16; i += 3 {
		f.WriteAt(bytes.Repeat([]byte(fmt.Sprintf("block %d ", i)), 500), i*MiB+100)
	}
	// Allocated zeros: a hole to --hole-detection=raw, data to SEEK_HOLE.
	f.WriteAt(make([]byte, MiB), 7*MiB)
	return p
}

func TestXZ(t *testing.T) {
	env := newEnv(t)
	in := t.TempDir()
	env.Inputs["image"] = in
	raw := sparseInput(t, env, in)
	opts := &XZ{Conversion: stageopt.Conversion{Input: "image", InputFilename: "disk.raw", Filename: "disk.raw.xz"}, Level: 1, BlockSize: 4 * MiB}
	runStage(t, env, "xz", opts)
	out := filepath.Join(env.Out, "disk.raw.xz")
	first := fileSHA(t, out)
	got := cmdOut(t, "xz", "-dc", out)
	want, _ := os.ReadFile(raw)
	if got != string(want) {
		t.Error("xz -d does not give the input back")
	}
	runStage(t, env, "xz", opts)
	if again := fileSHA(t, out); again != first {
		t.Error("two compressions differ")
	}
	assertOnly(t, env.Out, "disk.raw.xz")
}

func TestGCETar(t *testing.T) {
	env := newEnv(t)
	in := t.TempDir()
	env.Inputs["image"] = in
	raw := sparseInput(t, env, in)
	os.Rename(raw, filepath.Join(in, "image.raw"))
	raw = filepath.Join(in, "image.raw")
	opts := &GCETar{Conversion: stageopt.Conversion{Input: "image", InputFilename: "image.raw", Filename: "image.tar.gz"}}
	runStage(t, env, "gce-tar", opts)
	out := filepath.Join(env.Out, "image.tar.gz")
	first := fileSHA(t, out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != "disk.raw" || hdr.Typeflag != tar.TypeGNUSparse || hdr.Format != tar.FormatGNU ||
		hdr.ModTime.Unix() != testSDE || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Size != 16*MiB {
		t.Errorf("entry %q type %c format %v mtime %v uid %d gid %d size %d", hdr.Name, hdr.Typeflag, hdr.Format, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Size)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(raw)
	if !bytes.Equal(data, want) {
		t.Error("disk.raw content differs")
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("more than one entry: %v", err)
	}
	if fi, _ := f.Stat(); fi.Size() > MiB {
		t.Errorf("archive is %d bytes; sparse entries expected", fi.Size())
	}
	// A different sparse layout of the same bytes (every zero block a hole)
	// gives the same archive: holes are found from the data.
	holes := filepath.Join(in, "holes.raw")
	cmdOut(t, "cp", "--sparse=always", raw, holes)
	if allocated(t, holes) >= allocated(t, raw) {
		t.Fatalf("test setup: copy is not sparser than the input")
	}
	os.Rename(holes, raw)
	runStage(t, env, "gce-tar", opts)
	if again := fileSHA(t, out); again != first {
		t.Error("archive depends on the input's allocation")
	}
}

func TestFstab(t *testing.T) {
	env := newEnv(t)
	env.Out = ""
	env.Tree = t.TempDir()
	os.Mkdir(filepath.Join(env.Tree, "etc"), 0o755)
	os.Chtimes(filepath.Join(env.Tree, "etc"), time.Time{}, time.Unix(testSDE, 0))
	runStage(t, env, "fstab", smallDisk(9).Fstab())
	if fi, _ := os.Stat(filepath.Join(env.Tree, "etc")); fi.ModTime().Unix() != testSDE {
		t.Errorf("/etc mtime changed to %v", fi.ModTime())
	}
	got, err := os.ReadFile(filepath.Join(env.Tree, "etc/fstab"))
	if err != nil {
		t.Fatal(err)
	}
	v := stageopt.VolumeIDFromSeed(9, "fs-esp")
	want := "UUID=" + stageopt.UUIDFromSeed(9, "fs-root") + " / ext4 errors=remount-ro 0 1\n" +
		"UUID=" + v[:4] + "-" + v[4:] + " /boot/efi vfat umask=0077,nofail 0 2\n"
	if string(got) != want {
		t.Errorf("fstab:\n%s\nwant:\n%s", got, want)
	}
	fi, _ := os.Stat(filepath.Join(env.Tree, "etc/fstab"))
	if fi.ModTime().Unix() != testSDE || fi.Mode().Perm() != 0o644 {
		t.Errorf("mtime %v mode %v", fi.ModTime(), fi.Mode())
	}
}

// TestReproducible assembles the disk twice, from two separate copies of
// the same tree made at different times, in two output directories: the raw
// and qcow2 files must be identical.
func TestReproducible(t *testing.T) {
	var sums [2][2]string
	for i := range sums {
		env, h, disk := assembled(t, 11)
		runStage(t, env, "qemu-img", &QemuImg{Conversion: stageopt.Conversion{InputFilename: h.Filename, Filename: "disk.qcow2"}, Format: "qcow2"})
		sums[i] = [2]string{fileSHA(t, disk), fileSHA(t, filepath.Join(env.Out, "disk.qcow2"))}
		time.Sleep(1100 * time.Millisecond)
	}
	if sums[0] != sums[1] {
		t.Errorf("builds differ: raw %s vs %s, qcow2 %s vs %s", sums[0][0], sums[1][0], sums[0][1], sums[1][1])
	}
}

// TestFailureLeavesNothing checks that failing stages leave no file under
// the output name and no partial file.
func TestFailureLeavesNothing(t *testing.T) {
	t.Run("ext4 tree too big", func(t *testing.T) {
		env := newEnv(t)
		tree := t.TempDir()
		makeTree(t, tree)
		big := make([]byte, 3*MiB)
		for i := range big {
			big[i] = byte(i*7 + i>>9)
		}
		os.WriteFile(filepath.Join(tree, "big"), big, 0o644)
		env.Inputs["os"] = tree
		h := smallDisk(1)
		plan, _ := h.Plan()
		runStage(t, env, "gpt", plan[0].Options)
		ext4 := *plan[2].Options.(*stageopt.Ext4)
		ext4.Size = MiB
		err := newStage(t, "ext4", &ext4).Run(context.Background(), env)
		if err == nil {
			t.Fatal("ext4 of a 3 MiB tree into 1 MiB succeeded")
		}
		assertOnly(t, env.Out)
	})
	t.Run("cancelled xz", func(t *testing.T) {
		env := newEnv(t)
		sparseInput(t, env, env.Out)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := newStage(t, "xz", &XZ{Conversion: stageopt.Conversion{InputFilename: "disk.raw", Filename: "disk.raw.xz"}}).Run(ctx, env)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertOnly(t, env.Out, "disk.raw")
	})
	t.Run("grub-efi without kernel", func(t *testing.T) {
		env, h, _ := assembled(t, 2)
		before := fileSHA(t, filepath.Join(env.Out, h.Filename))
		os.Remove(filepath.Join(env.Inputs["os"], "boot/initrd.img-6.1.0-1-amd64"))
		plan, _ := h.Plan()
		err := newStage(t, "grub-efi", plan[3].Options).Run(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "/initrd.img") {
			t.Fatalf("err = %v, want one naming /initrd.img", err)
		}
		if after := fileSHA(t, filepath.Join(env.Out, h.Filename)); after != before {
			t.Error("disk changed by a stage that failed its checks")
		}
	})
	t.Run("missing disk", func(t *testing.T) {
		env := newEnv(t)
		env.Inputs["os"] = t.TempDir()
		plan, _ := smallDisk(1).Plan()
		if err := newStage(t, "esp", plan[1].Options).Run(context.Background(), env); err == nil {
			t.Fatal("esp without a disk succeeded")
		}
		assertOnly(t, env.Out)
	})
}

func TestExt4ClampsMtimes(t *testing.T) {
	env := newEnv(t)
	tree := filepath.Join(t.TempDir(), "tree")
	makeTree(t, tree)
	// A customization touched these after the packages went in.
	future := time.Unix(testSDE+86400, 0)
	os.WriteFile(filepath.Join(tree, "etc", "with space"), []byte("x"), 0o644)
	for _, p := range []string{"etc/with space", "etc", "."} {
		if err := os.Chtimes(filepath.Join(tree, p), time.Time{}, future); err != nil {
			t.Fatal(err)
		}
	}
	env.Inputs["os"] = tree
	h := smallDisk(3)
	assemble(t, env, h)
	ext, _ := h.Layout()
	dev := fmt.Sprintf("%s?offset=%d", filepath.Join(env.Out, h.Filename), ext[2].Start)
	for _, p := range []string{"/", "/etc", "\"/etc/with space\"", "/etc/hostname"} {
		st := cmdOut(t, "debugfs", "-R", "stat "+p, dev)
		if want := fmt.Sprintf("mtime: 0x%08x:00000000", testSDE); !strings.Contains(st, want) {
			t.Errorf("stat %s: want %q in\n%s", p, want, st)
		}
	}
}

func TestSystemdBoot(t *testing.T) {
	env, h, disk := assembled(t, 6)
	ext, _ := h.Layout()
	runStage(t, env, "systemd-boot", &SystemdBoot{Filename: h.Filename, ESPOffset: ext[1].Start, Title: "Debian (kib)",
		GrubConfig: stageopt.GrubConfig{Source: "os", RootUUID: h.RootUUID(), KernelOptions: "ro console=ttyS0,115200"}})
	img := fatImage(disk, ext[1].Start)
	list := cmdOut(t, "mdir", "-/", "-b", "-i", img, "::/")
	for _, want := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/EFI/systemd/systemd-bootx64.efi", "::/loader/loader.conf",
		"::/loader/entries/kib.conf", "::/kib/vmlinuz", "::/kib/initrd.img"} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("ESP lacks %s:\n%s", want, list)
		}
	}
	entry := cmdOut(t, "mtype", "-i", img, "::/loader/entries/kib.conf")
	if want := "title Debian (kib)\nlinux /kib/vmlinuz\ninitrd /kib/initrd.img\noptions root=UUID=" + h.RootUUID() + " ro console=ttyS0,115200\n"; entry != want {
		t.Errorf("entry:\n%s\nwant:\n%s", entry, want)
	}
	kernel, _ := os.ReadFile(filepath.Join(env.Inputs["os"], "boot/vmlinuz-6.1.0-1-amd64"))
	if got := cmdOut(t, "mtype", "-i", img, "::/kib/vmlinuz"); got != string(kernel) {
		t.Error("kernel in the ESP differs from the tree's")
	}
	sdboot, _ := os.ReadFile("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	if got := cmdOut(t, "mtype", "-i", img, "::/EFI/BOOT/BOOTX64.EFI"); got != string(sdboot) {
		t.Error("BOOTX64.EFI is not systemd-boot")
	}
}

// TestXZSameAsOneXZ checks that the stage's block-by-block compression, with
// its zero blocks compressed once, writes the bytes of one multi-threaded xz
// over the whole file, for sparse and allocated zeros and a partial last
// block.
func TestXZSameAsOneXZ(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level int
		block uint64
		size  int64
	}{
		{"1MiB blocks", 1, MiB, 16 * MiB},
		{"partial last block", 1, MiB, 16*MiB + 12345},
		{"4MiB blocks level 6", 6, 4 * MiB, 16 * MiB},
		{"small blocks: one xz", 1, 64 * 1024, 2 * MiB},
		{"empty file", 1, MiB, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			in := t.TempDir()
			env.Inputs["image"] = in
			raw := filepath.Join(in, "disk.raw")
			if tc.size == 0 {
				os.WriteFile(raw, nil, 0o644)
			} else {
				raw = sparseInput(t, env, in)
				if err := os.Truncate(raw, tc.size); err != nil {
					t.Fatal(err)
				}
			}
			opts := &XZ{Conversion: stageopt.Conversion{Input: "image", InputFilename: "disk.raw", Filename: "disk.raw.xz"},
				Level: tc.level, BlockSize: tc.block}
			runStage(t, env, "xz", opts)
			got, err := os.ReadFile(filepath.Join(env.Out, "disk.raw.xz"))
			if err != nil {
				t.Fatal(err)
			}
			want := cmdOut(t, "xz", "--compress", "--stdout", fmt.Sprintf("-%d", tc.level),
				"--threads=+2", fmt.Sprintf("--block-size=%d", tc.block), raw)
			if string(got) != want {
				t.Fatalf("the stage wrote %d bytes, one xz %d: they differ", len(got), len(want))
			}
			cmdOut(t, "xz", "--test", filepath.Join(env.Out, "disk.raw.xz"))
		})
	}
}

func TestParseXZBlockRefuses(t *testing.T) {
	good := []byte(cmdOut(t, "sh", "-c", "printf hello | xz --threads=+1 -1"))
	if _, err := parseXZBlock(good); err != nil {
		t.Fatalf("xz's own stream: %v", err)
	}
	for name, s := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-5],
		"no magic":  append([]byte("XXXXXX"), good[6:]...),
		"two streams": func() []byte {
			return []byte(cmdOut(t, "sh", "-c", "head -c 3000000 /dev/urandom | xz --threads=+1 --block-size=1048576 -0"))
		}(),
	} {
		if _, err := parseXZBlock(s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// BenchmarkXZ compresses the disk image named by $KIB_BENCH_RAW (a sparse
// raw image, say a build's image.raw) with the stage and, for comparison,
// with one multi-threaded xz over the whole file: same options, same bytes.
func BenchmarkXZ(b *testing.B) {
	raw := os.Getenv("KIB_BENCH_RAW")
	if raw == "" {
		b.Skip("KIB_BENCH_RAW names no raw image")
	}
	fi, err := os.Stat(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("stage", func(b *testing.B) {
		env := newEnv(b)
		env.Inputs["image"] = filepath.Dir(raw)
		opts := &XZ{Conversion: stageopt.Conversion{Input: "image", InputFilename: filepath.Base(raw), Filename: "disk.raw.xz"}}
		b.SetBytes(fi.Size())
		for b.Loop() {
			runStage(b, env, "xz", opts)
		}
	})
	b.Run("one-xz", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			cmd := exec.Command("xz", "--compress", "--stdout", "-6", "--threads=+2", fmt.Sprintf("--block-size=%d", 24*MiB), raw)
			cmd.Stdout = io.Discard
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestQemuImgVPC checks that kib's fixed VHD is, byte for byte, what
// qemu-img convert -O vpc -o subformat=fixed,force_size=on makes of the same
// raw disk, but for the footer's time stamp, UUID and checksum (kib sets
// the first two, so the third follows), and that the digest it hands the
// engine is the file's.
func TestQemuImgVPC(t *testing.T) {
	for _, tt := range []struct {
		name string
		size int64
		data map[int64]string
	}{
		{"padded to a MiB", 3*MiB + 4096, map[int64]string{0: "head", 3*MiB + 4000: "tail"}},
		{"whole MiBs", 8 * MiB, map[int64]string{MiB: "a", 8*MiB - 1: "z"}},
		{"1 GiB, mostly holes", 1 << 30, map[int64]string{0: "mbr", 600 * MiB: "middle", 1<<30 - 512: "gpt"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			raw := filepath.Join(env.Out, "in.raw")
			f, err := os.Create(raw)
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(tt.size)
			for off, s := range tt.data {
				f.WriteAt(bytes.Repeat([]byte(s), 100)[:min(int64(100*len(s)), tt.size-off)], off)
			}
			f.Close()
			digests := map[string]string{}
			env.Digest = func(file, sum string) { digests[file] = sum }
			uuid := stageopt.UUIDFromSeed(7, "vhd")
			runStage(t, env, "qemu-img", &QemuImg{Conversion: stageopt.Conversion{InputFilename: "in.raw", Filename: "disk.vhd"}, Format: "vpc", UUID: uuid})
			got := filepath.Join(env.Out, "disk.vhd")

			want := filepath.Join(t.TempDir(), "qemu.vhd")
			size := (tt.size + MiB - 1) / MiB * MiB
			cmdOut(t, "qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on", want, fmt.Sprint(size))
			cmdOut(t, "qemu-img", "convert", "-n", "--target-is-zero", "-f", "raw", "-O", "vpc", raw, want)

			if sum := fileSHA(t, got); digests["disk.vhd"] != sum {
				t.Errorf("digest handed to the engine %q, file's sha256 %s", digests["disk.vhd"], sum)
			}
			gf, _ := os.Open(got)
			defer gf.Close()
			wf, _ := os.Open(want)
			defer wf.Close()
			gi, _ := gf.Stat()
			wi, _ := wf.Stat()
			if gi.Size() != wi.Size() {
				t.Fatalf("kib's VHD is %d bytes, qemu-img's %d", gi.Size(), wi.Size())
			}
			// Outside both files' data regions both read as zeros.
			for _, name := range []string{got, want} {
				if a := allocated(t, name); a > 4*MiB {
					t.Errorf("%s allocates %d bytes", filepath.Base(name), a)
				}
			}
			ge, err := sparse.Data(gf, gi.Size())
			if err != nil {
				t.Fatal(err)
			}
			we, err := sparse.Data(wf, wi.Size())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range append(ge, we...) {
				e.End = min(e.End, gi.Size()-512) // the footers are compared below
				if e.End <= e.Start {
					continue
				}
				gb, wb := make([]byte, e.End-e.Start), make([]byte, e.End-e.Start)
				gf.ReadAt(gb, e.Start)
				wf.ReadAt(wb, e.Start)
				if !bytes.Equal(gb, wb) {
					t.Fatalf("kib's VHD differs from qemu-img's in [%d, %d)", e.Start, e.End)
				}
			}
			gft, err := ReadVHDFooter(gf)
			if err != nil {
				t.Fatal(err)
			}
			wft, err := ReadVHDFooter(wf)
			if err != nil {
				t.Fatal(err)
			}
			if gft.Timestamp != testSDE-vhdEpoch {
				t.Errorf("time stamp %d, want %d", gft.Timestamp, testSDE-vhdEpoch)
			}
			if u := fmt.Sprintf("%x-%x-%x-%x-%x", gft.UUID[0:4], gft.UUID[4:6], gft.UUID[6:8], gft.UUID[8:10], gft.UUID[10:]); u != uuid {
				t.Errorf("uuid %s, want %s", u, uuid)
			}
			gft.Timestamp, gft.UUID, gft.Checksum = 0, [16]byte{}, 0
			wft.Timestamp, wft.UUID, wft.Checksum = 0, [16]byte{}, 0
			if *gft != *wft {
				t.Errorf("footer differs from qemu-img's:\n kib  %+v\n qemu %+v", gft, wft)
			}
		})
	}
}
