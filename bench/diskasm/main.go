// Command diskasm assembles a hybrid BIOS+UEFI qcow2 from a root tree with
// kib's disk stages and prints the time each stage took. bench/disk.sh runs
// it next to a plain shell pipeline of the same tools.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/boottest"
	"github.com/kib-project/kib/internal/engine/stages"
	"github.com/kib-project/kib/internal/stageopt"
)

func main() {
	tree := flag.String("tree", "", "root tree directory")
	out := flag.String("out", "", "output directory (raw and qcow2 go here)")
	sizeMiB := flag.Uint64("size", 2048, "disk size in MiB")
	seed := flag.Int64("seed", 1, "seed for every identifier")
	sde := flag.Int64("sde", 1716163200, "SOURCE_DATE_EPOCH")
	efi := flag.String("efi", "grub-efi", "UEFI boot loader: grub-efi or systemd-boot")
	exports := flag.String("exports", "", "after the qcow2, also time these exports of the raw disk (comma-separated: vpc,gce,xz)")
	boot := flag.String("boot", "", "after assembly, boot the qcow2 with these firmwares (comma-separated: bios,uefi) and print the times")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *tree, *out, *sizeMiB, *seed, *sde, *efi, *exports); err != nil {
		fmt.Fprintln(os.Stderr, "diskasm:", err)
		os.Exit(1)
	}
	if *boot != "" {
		if err := bootAll(ctx, filepath.Join(*out, "disk.qcow2"), *boot); err != nil {
			fmt.Fprintln(os.Stderr, "diskasm:", err)
			os.Exit(1)
		}
	}
}

func run(ctx context.Context, tree, out string, sizeMiB uint64, seed, sde int64, efi, exports string) error {
	if tree == "" || out == "" {
		return fmt.Errorf("-tree and -out are required")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(out, ".work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &stages.Env{Out: out, Work: work, Inputs: map[string]string{"os": tree},
		SourceDateEpoch: sde, Seed: seed, Arch: "amd64",
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	h := stageopt.HybridDisk{Filename: "disk.raw", Size: sizeMiB * stageopt.MiB, Seed: seed, Source: "os",
		KernelOptions: "ro console=tty0 console=ttyS0,115200"}
	// The root tree pipeline's last stage: /etc/fstab for this disk.
	if err := (*stages.Fstab)(h.Fstab()).Run(ctx, &stages.Env{Tree: tree, SourceDateEpoch: sde, Seed: seed, Arch: "amd64", Log: env.Log}); err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	plan, err := h.Plan()
	if err != nil {
		return err
	}
	switch efi {
	case "grub-efi":
	case "systemd-boot":
		for i, s := range plan {
			if g, ok := s.Options.(*stageopt.GrubEFI); ok {
				plan[i] = stageopt.StageSpec{Type: "systemd-boot", Options: &stageopt.SystemdBoot{Filename: g.Filename, ESPOffset: g.ESPOffset, GrubConfig: g.GrubConfig}}
			}
		}
	default:
		return fmt.Errorf("-efi: want grub-efi or systemd-boot, got %q", efi)
	}
	plan = append(plan, stageopt.StageSpec{Type: "qemu-img", Options: &stageopt.QemuImg{Conversion: stageopt.Conversion{InputFilename: "disk.raw", Filename: "disk.qcow2"}, Format: "qcow2"}})
	for _, e := range strings.Split(exports, ",") {
		switch e {
		case "":
		case "vpc":
			plan = append(plan, stageopt.StageSpec{Type: "qemu-img", Options: &stageopt.QemuImg{Conversion: stageopt.Conversion{InputFilename: "disk.raw", Filename: "disk.vhd"}, Format: "vpc", UUID: stageopt.UUIDFromSeed(seed, "vhd")}})
		case "gce":
			plan = append(plan, stageopt.StageSpec{Type: "gce-tar", Options: &stageopt.GCETar{Conversion: stageopt.Conversion{InputFilename: "disk.raw", Filename: "image.tar.gz"}}})
		case "xz":
			plan = append(plan, stageopt.StageSpec{Type: "xz", Options: &stageopt.XZ{Conversion: stageopt.Conversion{InputFilename: "disk.raw", Filename: "disk.raw.xz"}}})
		default:
			return fmt.Errorf("-exports: unknown export %q (want vpc, gce or xz)", e)
		}
	}
	total := time.Now()
	for _, s := range plan {
		t := time.Now()
		st, err := stage(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Type, err)
		}
		if err := st.Run(ctx, env); err != nil {
			return fmt.Errorf("%s: %w", s.Type, err)
		}
		name := s.Type
		if q, ok := s.Options.(*stageopt.QemuImg); ok {
			name += ":" + q.Format
		}
		fmt.Printf("STAGE %-14s %7.3fs\n", name, time.Since(t).Seconds())
	}
	fmt.Printf("TOTAL %-10s %7.3fs\n", "kib", time.Since(total).Seconds())
	fmt.Printf("ROOT_UUID %s\n", h.RootUUID())
	return nil
}

// stage makes the runnable stage of a plan entry through the registry, as
// the engine does.
func stage(s stageopt.StageSpec) (stages.Stage, error) {
	raw, err := json.Marshal(s.Options)
	if err != nil {
		return nil, err
	}
	return stages.New(s.Type, raw)
}

// bootAll boots image once per firmware and prints the times.
func bootAll(ctx context.Context, image, firmwares string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, name := range strings.Split(firmwares, ",") {
		fw := boottest.BIOS
		switch name {
		case "bios":
		case "uefi":
			fw = boottest.UEFI
		default:
			return fmt.Errorf("-boot: unknown firmware %q (want bios or uefi)", name)
		}
		res, err := boottest.Boot(ctx, boottest.Options{Image: image, Format: "qcow2", Firmware: fw, Log: log})
		if err != nil {
			return err
		}
		fmt.Printf("BOOT %-4s login_prompt %6.1fs shell %6.1fs poweroff %6.1fs state %s failed %v\n", name,
			res.LoginPrompt.Seconds(), res.Shell.Seconds(), res.PowerOff.Seconds(), res.SystemState, res.FailedUnits)
	}
	return nil
}
