package boottest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/engine/stages"
	"github.com/kib-project/kib/internal/hostcmd"
)

const (
	testSDE   = 1716163200
	testSuite = "bookworm"
	// testUser is added to the image by the tree's customize hook.
	testUser     = "kibuser"
	testHostname = "kibtest"
)

// testPackages is the small bootable package set.
var testPackages = []string{"linux-image-amd64", "systemd-sysv", "udev", "e2fsprogs", "dbus"}

// testHooks customize the tree as kib's customization stages would:
// hostname, a user, root without a password for the serial login, and no
// host resolv.conf.
var testHooks = []string{
	`echo ` + testHostname + ` > "$1/etc/hostname"`,
	`rm -f "$1/etc/resolv.conf"`,
	`chroot "$1" passwd -d root`,
	`chroot "$1" useradd -m -s /bin/bash ` + testUser,
}

// mirror reads the Debian mirror URL for suite from the host's deb822 apt
// sources.
func mirror(t *testing.T, suite string) string {
	t.Helper()
	f, err := os.Open("/etc/apt/sources.list.d/debian.sources")
	if err != nil {
		t.Fatalf("reading the host's apt sources: %v", err)
	}
	defer f.Close()
	var uris, suites string
	sc := bufio.NewScanner(f)
	flush := func() string {
		defer func() { uris, suites = "", "" }()
		for _, s := range strings.Fields(suites) {
			if s == suite && uris != "" {
				return strings.Fields(uris)[0]
			}
		}
		return ""
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if u := flush(); u != "" {
				return u
			}
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			switch strings.TrimSpace(k) {
			case "URIs":
				uris = strings.TrimSpace(v)
			case "Suites":
				suites = strings.TrimSpace(v)
			}
		}
	}
	if u := flush(); u != "" {
		return u
	}
	t.Fatalf("no mirror for %s in /etc/apt/sources.list.d/debian.sources", suite)
	return ""
}

// rootfsTar returns a tar of the bootable test tree, built with mmdebstrap
// on first use and cached under the user cache directory, keyed by
// everything that goes into it.
func rootfsTar(t *testing.T, log *slog.Logger) string {
	t.Helper()
	m := mirror(t, testSuite)
	key := sha256.Sum256(fmt.Appendf(nil, "v1\x00%s\x00%s\x00%s\x00%d\x00%s", testSuite, m,
		strings.Join(testPackages, ","), testSDE, strings.Join(testHooks, "\x00")))
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "kib-test")
	tarPath := filepath.Join(dir, "rootfs-"+hex.EncodeToString(key[:8])+".tar")
	if _, err := os.Stat(tarPath); err == nil {
		log.Info("test tree: cached", "tar", tarPath)
		return tarPath
	}
	tmp, err := os.MkdirTemp(dir+"-tmp", "mmdebstrap-")
	if os.IsNotExist(err) {
		os.MkdirAll(dir+"-tmp", 0o755)
		tmp, err = os.MkdirTemp(dir+"-tmp", "mmdebstrap-")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(testPackages, ","),
		"--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata"}
	for _, h := range testHooks {
		args = append(args, "--customize-hook="+h)
	}
	out := filepath.Join(tmp, "rootfs.tar")
	args = append(args, testSuite, out, m)
	log.Info("test tree: building with mmdebstrap (a few minutes)", "mirror", m, "packages", testPackages)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	_, err = hostcmd.Run(ctx, hostcmd.Cmd{Path: "mmdebstrap", Args: args,
		Env: []string{"TMPDIR=" + tmp, fmt.Sprintf("SOURCE_DATE_EPOCH=%d", testSDE)}})
	if err != nil {
		t.Fatalf("mmdebstrap: %v", err)
	}
	if err := os.Rename(out, tarPath); err != nil {
		t.Fatal(err)
	}
	log.Info("test tree: built", "tar", tarPath, "elapsed", time.Since(start).Round(time.Second))
	return tarPath
}

// extract unpacks the tree tar into a new directory.
func extract(t *testing.T, tarPath string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := hostcmd.Run(context.Background(), hostcmd.Cmd{Path: "tar", Args: []string{
		"-xf", tarPath, "-C", dir, "--numeric-owner", "--same-permissions", "--xattrs", "--xattrs-include=*"}})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

type built struct {
	raw, qcow2 string
	disk       stages.HybridDisk
	times      map[string]time.Duration
}

// build makes a hybrid disk from one extraction of the tree: the fstab tree
// stage, then the disk stages and qemu-img, as the engine would run them.
func build(t *testing.T, ctx context.Context, log *slog.Logger, tarPath string) built {
	t.Helper()
	tree := extract(t, tarPath)
	base := t.TempDir()
	env := &stages.Env{Tree: tree, Work: filepath.Join(base, "work"), Inputs: map[string]string{},
		SourceDateEpoch: testSDE, Seed: 2024, Arch: "amd64", Log: log}
	os.MkdirAll(env.Work, 0o755)
	h := stages.HybridDisk{Filename: "disk.raw", Size: 2048 * stages.MiB, Seed: env.Seed, Source: "os",
		KernelOptions: "ro console=ttyS0,115200 quiet"}
	b := built{disk: h, times: map[string]time.Duration{}}
	if err := h.Fstab().Run(ctx, env); err != nil {
		t.Fatal(err)
	}
	env.Tree, env.Out, env.Inputs["os"] = "", filepath.Join(base, "out"), tree
	os.MkdirAll(env.Out, 0o755)
	plan, err := h.Plan()
	if err != nil {
		t.Fatal(err)
	}
	plan = append(plan, stages.StageSpec{Type: "qemu-img", Options: &stages.QemuImg{Conversion: stages.Conversion{InputFilename: h.Filename, Filename: "disk.qcow2"}, Format: "qcow2"}})
	for _, s := range plan {
		start := time.Now()
		if err := s.Options.Run(ctx, env); err != nil {
			t.Fatalf("%s: %v", s.Type, err)
		}
		b.times[s.Type] = time.Since(start)
	}
	b.raw, b.qcow2 = filepath.Join(env.Out, h.Filename), filepath.Join(env.Out, "disk.qcow2")
	return b
}

func sha(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

func debugfs(t *testing.T, dev, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, dev).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
}

// TestBootImage builds a bootable hybrid qcow2 twice from two extractions
// of a small Debian tree, checks that both builds are identical and that
// the customizations are inside, then boots it with SeaBIOS and with OVMF
// under TCG, logs in on the serial console and checks systemd's state.
func TestBootImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Debian tree and boots it twice under TCG; minutes")
	}
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	ctx := t.Context()
	tarPath := rootfsTar(t, log)

	a := build(t, ctx, log, tarPath)
	time.Sleep(time.Second) // the second extraction gets other ctimes
	b := build(t, ctx, log, tarPath)
	for _, st := range []string{"gpt", "esp", "ext4", "grub-efi", "grub-bios", "qemu-img"} {
		t.Logf("stage %-9s %6.2fs", st, a.times[st].Seconds())
	}
	if x, y := sha(t, a.raw), sha(t, b.raw); x != y {
		t.Errorf("raw images differ: %s vs %s", x, y)
	} else {
		t.Logf("raw images identical: %s", x)
	}
	if x, y := sha(t, a.qcow2), sha(t, b.qcow2); x != y {
		t.Errorf("qcow2 images differ: %s vs %s", x, y)
	} else {
		t.Logf("qcow2 images identical: %s", x)
	}

	// Sparse: the raw file uses about what the data needs.
	var st struct{ blocks, size int64 }
	out, _ := exec.Command("stat", "-c", "%b %s", a.raw).Output()
	fmt.Sscan(string(out), &st.blocks, &st.size)
	t.Logf("raw: %d MiB apparent, %d MiB allocated", st.size>>20, st.blocks*512>>20)
	if st.blocks*512 > st.size/2 {
		t.Errorf("raw image allocates %d of %d bytes; want it sparse", st.blocks*512, st.size)
	}

	// Customizations are in the image, read without booting.
	ext, err := a.disk.Layout()
	if err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%s?offset=%d", a.raw, ext[2].Start)
	if got := debugfs(t, dev, "cat /etc/hostname"); got != testHostname+"\n" {
		t.Errorf("/etc/hostname = %q, want %q", got, testHostname)
	}
	if got := debugfs(t, dev, "cat /etc/passwd"); !strings.Contains(got, "\n"+testUser+":x:1000:") {
		t.Errorf("/etc/passwd has no %s:\n%s", testUser, got)
	}
	if got := debugfs(t, dev, "stat /home/"+testUser); !strings.Contains(got, "Type: directory") || !strings.Contains(got, "User:  1000") {
		t.Errorf("/home/%s:\n%s", testUser, got)
	}
	if got := debugfs(t, dev, "cat /etc/fstab"); !strings.Contains(got, "UUID="+a.disk.RootUUID()+" / ext4") {
		t.Errorf("/etc/fstab:\n%s", got)
	}

	for _, fw := range []Firmware{BIOS, UEFI} {
		t.Run(fw.String(), func(t *testing.T) {
			var console strings.Builder
			res, err := Boot(ctx, Options{Image: a.qcow2, Format: "qcow2", Firmware: fw, Timeout: 300 * time.Second,
				User: "root", Console: &console, Log: log})
			if err != nil {
				t.Fatalf("boot: %v\nconsole tail:\n%s", err, tail(console.String(), 3000))
			}
			t.Logf("%s: login prompt %.1fs, shell %.1fs, powered off %.1fs, state %q, failed %v",
				fw, res.LoginPrompt.Seconds(), res.Shell.Seconds(), res.PowerOff.Seconds(), res.SystemState, res.FailedUnits)
			if res.SystemState != "running" && res.SystemState != "degraded" {
				t.Errorf("systemctl is-system-running = %q, want running or degraded", res.SystemState)
			}
			if len(res.FailedUnits) > 0 {
				t.Errorf("failed units: %v", res.FailedUnits)
			}
			if !strings.Contains(res.Console, testHostname+" login:") {
				t.Errorf("no %q login prompt on the console", testHostname)
			}
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
