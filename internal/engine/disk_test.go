package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/boottest"
	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/engine/stages"
	"github.com/kib-project/kib/internal/kojimeta"
	"github.com/kib-project/kib/internal/manifest"
	"github.com/kib-project/kib/internal/store"
)

// bootBlueprint sets root's password to "kib" (for the serial console login)
// and adds a user; the disk test checks both inside the image.
const bootBlueprint = `
[customizations]
hostname = "kib-disk"
[[customizations.user]]
name = "root"
password = "$6$kibsalt$8zTUYBNqnkNUMvoTs26Ed.tHcrGdu9Lqn7syL7TviTuUPXyCHtgtmglwmR7p9LgPQLziRrSDw8m.Se9QCktv1/"
[[customizations.user]]
name = "bob"
uid = 2001
`

// TestDiskImage builds the same qcow2 manifest in two stores (the second
// without any mirror, with initramfs-tools' own hook-functions instead of
// kib's faster copy_file, from the packages as published instead of their
// uncompressed copies, with every package extracted before dpkg runs
// instead of stubs, with the package tree installed on disk instead of in
// memory, and with the os tree copied instead of linked through an
// overlay) and checks that raw and qcow2 are bit-identical, that
// the customizations are in the root file system (read with debugfs, without
// booting), and that the image boots to a login with SeaBIOS and with OVMF.
func TestDiskImage(t *testing.T) {
	needsRealBuild(t)
	ctx := context.Background()
	m := generateWith(t, "qcow2", t.TempDir(), bootBlueprint)
	log := testLogger(t)
	root := t.TempDir()
	var raws, qcows []string
	var toolLogs, logs [2]bytes.Buffer
	var image Artifact
	for i, name := range []string{"storeA", "storeB"} {
		st, err := store.Open(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		e := &Engine{Store: st, Log: slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, &logs[i]), nil)), ToolLog: &toolLogs[i]}
		if i == 1 {
			copyDir(t, filepath.Join(root, "storeA", "sources"), filepath.Join(st.Dir(), "sources"))
			e.HTTPClient = offlineClient
			t.Setenv("KIB_INITRAMFS_FAST", "off")
			t.Setenv("KIB_UNCOMPRESSED_DEBS", "off")
			t.Setenv("KIB_STUB_EXTRACT", "off")
			t.Setenv("KIB_BUILD_IN_MEMORY", "off")
			t.Setenv("KIB_TREE_LINK", "off")
		}
		arts, err := e.Build(ctx, m, Options{OutputDir: filepath.Join(root, "out"+name)})
		if err != nil {
			t.Fatal(err)
		}
		image = arts[0]
		qcows = append(qcows, arts[0].SHA256)
		raws = append(raws, rawDiskSum(t, st, m))
	}
	// Store A's build took kib's copy_file, store B's initramfs-tools' own,
	// when the image has the initramfs-tools kib knows.
	for i, name := range []string{"storeA", "storeB"} {
		// The hook prints the path it bound over (its command line, which
		// mmdebstrap logs too, names it as "$h").
		fast := strings.Contains(toolLogs[i].String(), "/usr/share/initramfs-tools/hook-functions with kib's copy_file")
		known := slices.ContainsFunc(m.Sources.Debs, func(d manifest.Deb) bool {
			return d.Name == "initramfs-tools-core" && d.Version == "0.142+deb12u3"
		})
		// Store A made the os tree of links to the package tree's files
		// through an overlay, store B copied it.
		if linked := strings.Contains(logs[i].String(), "overlay made real"); linked != (i == 0) {
			t.Errorf("%s: os tree linked through an overlay: %v", name, linked)
		}
		// Store A installed the package tree in memory, store B on disk.
		mem := strings.Contains(toolLogs[i].String(), "kib: the package tree in memory")
		switch {
		case i == 1 && mem:
			t.Errorf("%s: the package tree was installed in memory with KIB_BUILD_IN_MEMORY=off", name)
		case i == 0 && !mem && memAvailableGiB(t) >= 4:
			t.Errorf("%s: the package tree was not installed in memory, with %d GiB available", name, memAvailableGiB(t))
		}
		switch {
		case i == 1 && fast:
			t.Errorf("%s: kib's copy_file used with KIB_INITRAMFS_FAST=off", name)
		case i == 0 && known && !fast:
			t.Errorf("%s: initramfs-tools-core 0.142+deb12u3 built without kib's copy_file", name)
		case i == 0 && !fast:
			t.Logf("%s: this initramfs-tools-core is not the one kib's copy_file was proven against", name)
		}
	}
	if raws[0] != raws[1] {
		t.Errorf("disk.raw differs between stores: %s vs %s", raws[0], raws[1])
	}
	if qcows[0] != qcows[1] {
		t.Errorf("disk.qcow2 differs between stores: %s vs %s", qcows[0], qcows[1])
	}
	checkBuildInfoBoot(t, image, "hybrid")
	checkGrownDisk(t, root, bootBlueprint)
	checkVHD(t, root, bootBlueprint)
	if _, err := kojimeta.ReadBuildInfo(image.Info); err != nil {
		t.Errorf("kib koji import would reject %s: %v", image.Info, err)
	}

	// The customizations, read from the root file system without booting.
	st, _ := store.Open(filepath.Join(root, "storeA"))
	raw := rawDiskPath(t, st, m)
	fs := fmt.Sprintf("%s?offset=%d", raw, rootOffset(t, raw))
	if got := run(t, "debugfs", "-R", "cat /etc/hostname", fs); got != "kib-disk\n" {
		t.Errorf("/etc/hostname in the image = %q", got)
	}
	if got := run(t, "debugfs", "-R", "cat /etc/passwd", fs); !strings.Contains(got, "bob:x:2001:") {
		t.Errorf("/etc/passwd in the image has no bob:\n%s", got)
	}

	for _, fw := range []boottest.Firmware{boottest.BIOS, boottest.UEFI} {
		t.Run("boot-"+fw.String(), func(t *testing.T) {
			res, err := boottest.Boot(ctx, boottest.Options{Image: image.Path, Format: "qcow2", Firmware: fw,
				Timeout: 300 * time.Second, User: "root", Password: "kib", Log: log})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: login prompt %s, shell %s, powered off %s", fw, res.LoginPrompt.Round(time.Second),
				res.Shell.Round(time.Second), res.PowerOff.Round(time.Second))
			if res.SystemState != "running" && res.SystemState != "degraded" {
				t.Errorf("systemctl is-system-running = %q", res.SystemState)
			}
			if len(res.FailedUnits) > 0 {
				t.Errorf("failed units: %v", res.FailedUnits)
			}
		})
	}
}

// checkGrownDisk builds the qcow2 of bp with one more package in the two
// stores under root that hold bp's: store A grows its package tree (dpkg
// on an overlay of the smaller tree, the smaller tree's initramfs kept), store B,
// with its settings, installs the packages clean; the images must be the
// same bits.
func checkGrownDisk(t *testing.T, root, bp string) {
	t.Helper()
	m := generateWith(t, "qcow2", t.TempDir(), bp+"\n[[packages]]\nname = \"tree\"\n")
	var sums [2]string
	for i, name := range []string{"storeA", "storeB"} {
		for _, v := range []string{"KIB_INITRAMFS_FAST", "KIB_UNCOMPRESSED_DEBS", "KIB_STUB_EXTRACT", "KIB_BUILD_IN_MEMORY", "KIB_TREE_LINK", "KIB_GROW"} {
			if i == 0 {
				t.Setenv(v, "")
			} else {
				t.Setenv(v, "off")
			}
		}
		st, err := store.Open(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		e := &Engine{Store: st, Log: slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, &logs), nil))}
		arts, err := e.Build(context.Background(), m, Options{OutputDir: filepath.Join(root, "grown-"+name)})
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = arts[0].SHA256
		if grown := strings.Contains(logs.String(), `msg="grown from a smaller package set"`); grown != (i == 0) {
			t.Errorf("%s: package tree grown from the smaller one: %v", name, grown)
		}
		// tree adds no input of the initramfs build: store A keeps the
		// smaller tree's initramfs, store B builds one; the bits agree.
		if kept := strings.Contains(logs.String(), `msg="grow: keeping the smaller tree's initramfs"`); kept != (i == 0) {
			t.Errorf("%s: the smaller tree's initramfs kept: %v", name, kept)
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("disk.qcow2 with one more package: grown %s, clean %s", sums[0], sums[1])
	}
}

// checkVHD builds the vhd of bp in store A under root, which holds bp's
// qcow2 (a type change): the VHD must hold the raw disk as its first bytes,
// the digest the stage took as it wrote it must be the file's sha256, and
// a second export must give the same digest without hashing again.
func checkVHD(t *testing.T, root, bp string) {
	t.Helper()
	for _, v := range []string{"KIB_INITRAMFS_FAST", "KIB_UNCOMPRESSED_DEBS", "KIB_STUB_EXTRACT", "KIB_BUILD_IN_MEMORY", "KIB_TREE_LINK", "KIB_GROW"} {
		t.Setenv(v, "")
	}
	m := generateWith(t, "vhd", t.TempDir(), bp)
	st, err := store.Open(filepath.Join(root, "storeA"))
	if err != nil {
		t.Fatal(err)
	}
	var sums [2]string
	for i := range sums {
		e := &Engine{Store: st, Log: testLogger(t)}
		arts, err := e.Build(context.Background(), m, Options{OutputDir: filepath.Join(root, fmt.Sprint("vhd-", i))})
		if err != nil {
			t.Fatal(err)
		}
		a := arts[0]
		if got := strings.Fields(run(t, "sha256sum", a.Path))[0]; got != a.SHA256 {
			t.Fatalf("export %d: build-info sha256 %s, file's %s", i, a.SHA256, got)
		}
		sums[i] = a.SHA256
		if i == 0 {
			raw := rawDiskPath(t, st, m)
			fi, _ := os.Stat(raw)
			run(t, "cmp", "-n", fmt.Sprint(fi.Size()), raw, a.Path)
			f, _ := os.Open(a.Path)
			ft, err := stages.ReadVHDFooter(f)
			f.Close()
			if err != nil || ft.CurrentSize != uint64(fi.Size()) {
				t.Fatalf("vhd footer %+v, %v; want the raw disk's size %d", ft, err, fi.Size())
			}
		}
	}
	keys, _ := Keys(m)
	_, i := m.Pipeline("vpc")
	if d := store.Digests(st.ObjectPath(keys[i]))["disk.vhd"]; d.SHA256 != sums[0] {
		t.Errorf("the vpc object keeps digest %q, want %s", d.SHA256, sums[0])
	}
}

func checkBuildInfoBoot(t *testing.T, a Artifact, mode string) {
	t.Helper()
	data, err := os.ReadFile(a.Info)
	if err != nil {
		t.Fatal(err)
	}
	var bi buildinfo.BuildInfo
	json.Unmarshal(data, &bi)
	if bi.BootMode != mode || bi.ExportName != "qcow2" || bi.ExportFilename != "disk.qcow2" {
		t.Errorf("build-info.json = %+v", bi)
	}
}

// rawDiskPath is the raw disk in the store's "image" pipeline output.
func rawDiskPath(t *testing.T, st *store.Store, m *manifest.Manifest) string {
	t.Helper()
	keys, err := Keys(m)
	if err != nil {
		t.Fatal(err)
	}
	_, i := m.Pipeline("image")
	return filepath.Join(st.ObjectPath(keys[i]), "out", "disk.raw")
}

func rawDiskSum(t *testing.T, st *store.Store, m *manifest.Manifest) string {
	t.Helper()
	return strings.Fields(run(t, "sha256sum", rawDiskPath(t, st, m)))[0]
}

// rootOffset reads the root partition's byte offset from the GPT.
func rootOffset(t *testing.T, raw string) int64 {
	t.Helper()
	var pt struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start int64  `json:"start"`
				Name  string `json:"name"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "-J", raw)), &pt); err != nil {
		t.Fatal(err)
	}
	for _, p := range pt.PartitionTable.Partitions {
		if p.Name == "root" {
			ss := pt.PartitionTable.SectorSize
			if ss == 0 {
				ss = 512
			}
			return p.Start * ss
		}
	}
	t.Fatal("no partition named root")
	return 0
}

// memAvailableGiB returns the machine's available memory, in GiB.
func memAvailableGiB(t *testing.T) int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err != nil {
				t.Fatal(err)
			}
			return kib >> 20
		}
	}
	t.Fatal("no MemAvailable in /proc/meminfo")
	return 0
}
