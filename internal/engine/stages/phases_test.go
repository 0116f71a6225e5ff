package stages

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDpkgPhases(t *testing.T) {
	log := `100.000 processing: install: a.deb
100.100 status: a: half-installed
101.000 status: a: unpacked
101.000 processing: install: linux-image.deb
104.000 status: linux-image: unpacked
104.500 processing: configure: a
104.700 status: a: installed
104.700 processing: configure: linux-image
110.700 status: linux-image: installed
110.700 processing: trigproc: initramfs-tools
112.700 status: initramfs-tools: installed
113.000 processing: trigproc: man-db
113.200 status: man-db: installed
`
	file := filepath.Join(t.TempDir(), "dpkg-status")
	if err := os.WriteFile(file, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	phases, slow := dpkgPhases(readMarks(file, true))
	want := []phase{{"unpack", 4500 * time.Millisecond}, {"configure", 6200 * time.Millisecond}, {"triggers", 2500 * time.Millisecond}}
	if len(phases) != len(want) {
		t.Fatalf("phases = %v", phases)
	}
	for i := range want {
		if phases[i].name != want[i].name || (phases[i].d-want[i].d).Abs() > time.Millisecond {
			t.Errorf("phase %d = %v, want %v", i, phases[i], want[i])
		}
	}
	var names []string
	for _, s := range slow {
		names = append(names, s.name)
	}
	if got := strings.Join(names, ","); got != "install: a.deb,install: linux-image.deb,configure: linux-image,trigproc: initramfs-tools" {
		t.Errorf("slow steps = %s", got)
	}
}

func TestLogPhases(t *testing.T) {
	dir := t.TempDir()
	marks := filepath.Join(dir, "phases")
	os.WriteFile(marks, []byte("setup 101.5\nextract 108\ninstall 150\ninitramfs 152\n"), 0o644)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	logPhases(log, "mmdebstrap", time.Unix(100, 0), time.Unix(153, 0), readMarks(marks, false), nil, 700*time.Millisecond)
	out := buf.String()
	for _, want := range []string{
		`msg="phase done" stage=mmdebstrap phase=setup duration=1.5s`,
		`phase=extract duration=6.5s`,
		`phase=install duration=42s`,
		`phase=initramfs duration=2s`,
		`phase=cleanup duration=1s`,
		`phase=compress duration=700ms`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
