package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	tests := []struct {
		step, total int
		done, bytes int64
		want        string
	}{
		{1, 4, 0, 0, "[>                             ] 1/4 fetch  3s"},
		{1, 4, 50 << 20, 100 << 20, "[===>                          ] 1/4 fetch  50.0/100.0 MiB  3s"},
		{4, 4, 0, 0, "[======================>       ] 4/4 fetch  3s"},
	}
	for _, tt := range tests {
		if got := Line(tt.step, tt.total, "fetch", tt.done, tt.bytes, 3*time.Second); got != tt.want {
			t.Errorf("Line = %q, want %q", got, tt.want)
		}
	}
}

func TestBarDrawsStepNames(t *testing.T) {
	var buf bytes.Buffer
	b := NewBar(&buf)
	b.Step(2, 3, "pipeline os: mmdebstrap (1/5)")
	b.Stop()
	b.Stop() // a second Stop is harmless
	if !strings.Contains(buf.String(), "2/3 pipeline os: mmdebstrap (1/5)") || !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("bar wrote %q", buf.String())
	}
}
