// Command boottime boots a disk image under TCG with kib's boot test harness
// and prints how long it took to reach the login prompt, a shell and
// poweroff. It is a benchmark helper, not part of kib.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/boottest"
)

func main() {
	image := flag.String("image", "", "disk image")
	format := flag.String("format", "qcow2", "qemu format of the image")
	firmwares := flag.String("firmware", "bios,uefi", "comma-separated: bios, uefi")
	user := flag.String("user", "root", "user to log in as")
	password := flag.String("password", "", "password of the user")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for _, f := range strings.Split(*firmwares, ",") {
		fw := boottest.BIOS
		if f == "uefi" {
			fw = boottest.UEFI
		}
		res, err := boottest.Boot(context.Background(), boottest.Options{Image: *image, Format: *format, Firmware: fw,
			User: *user, Password: *password, Timeout: 300 * time.Second, Log: log})
		if err != nil {
			fmt.Fprintln(os.Stderr, "boottime:", err)
			os.Exit(1)
		}
		fmt.Printf("BOOT %s login %.1f s, shell %.1f s, poweroff %.1f s, state %s\n", fw,
			res.LoginPrompt.Seconds(), res.Shell.Seconds(), res.PowerOff.Seconds(), res.SystemState)
	}
}
