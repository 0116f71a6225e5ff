// Command diskasm assembles a hybrid BIOS+UEFI qcow2 from a root tree with
// kib's disk stages and prints the time each stage took. bench/disk.sh runs
// it next to a plain shell pipeline of the same tools.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/kib-project/kib/internal/engine/stages"
)

func main() {
	tree := flag.String("tree", "", "root tree directory")
	out := flag.String("out", "", "output directory (raw and qcow2 go here)")
	sizeMiB := flag.Uint64("size", 2048, "disk size in MiB")
	seed := flag.Int64("seed", 1, "seed for every identifier")
	sde := flag.Int64("sde", 1716163200, "SOURCE_DATE_EPOCH")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *tree, *out, *sizeMiB, *seed, *sde); err != nil {
		fmt.Fprintln(os.Stderr, "diskasm:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, tree, out string, sizeMiB uint64, seed, sde int64) error {
	if tree == "" || out == "" {
		return fmt.Errorf("-tree and -out are required")
	}
	work, err := os.MkdirTemp(out, ".work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &stages.Env{Out: out, Work: work, Inputs: map[string]string{"os": tree},
		SourceDateEpoch: sde, Seed: seed, Arch: "amd64",
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	h := stages.HybridDisk{Filename: "disk.raw", Size: sizeMiB * stages.MiB, Seed: seed, Source: "os",
		KernelOptions: "ro console=tty0 console=ttyS0,115200"}
	plan, err := h.Plan()
	if err != nil {
		return err
	}
	plan = append(plan, stages.StageSpec{Type: "qemu-img", Options: &stages.QemuImg{InputFilename: "disk.raw", Filename: "disk.qcow2", Format: "qcow2"}})
	total := time.Now()
	for _, s := range plan {
		t := time.Now()
		if err := s.Options.Run(ctx, env); err != nil {
			return fmt.Errorf("%s: %w", s.Type, err)
		}
		fmt.Printf("STAGE %-10s %7.3fs\n", s.Type, time.Since(t).Seconds())
	}
	fmt.Printf("TOTAL %-10s %7.3fs\n", "kib", time.Since(total).Seconds())
	fmt.Printf("ROOT_UUID %s\n", h.RootUUID())
	return nil
}
