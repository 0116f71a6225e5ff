// Package progress draws a one-line progress bar with the current step's name
// on a terminal.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bar is a terminal progress bar. It is safe for concurrent use.
type Bar struct {
	w     io.Writer
	start time.Time

	mu          sync.Mutex
	step, total int
	name        string
	done, bytes int64
	stop        chan struct{}
	stopped     chan struct{}
	once        sync.Once
}

// NewBar starts a bar that redraws on w several times a second until Stop.
func NewBar(w io.Writer) *Bar {
	b := &Bar{w: w, start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
	go b.loop()
	return b
}

// Step records that step of total, called name, has started.
func (b *Bar) Step(step, total int, name string) {
	b.mu.Lock()
	b.step, b.total, b.name = step, total, name
	b.done, b.bytes = 0, 0
	b.mu.Unlock()
}

// Bytes records byte progress within the current step.
func (b *Bar) Bytes(done, total int64) {
	b.mu.Lock()
	b.done, b.bytes = done, total
	b.mu.Unlock()
}

// Stop draws the final state and ends the line.
func (b *Bar) Stop() {
	b.once.Do(func() {
		close(b.stop)
		<-b.stopped
		b.draw()
		fmt.Fprintln(b.w)
	})
}

func (b *Bar) loop() {
	defer close(b.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.draw()
		}
	}
}

const width = 30

func (b *Bar) draw() {
	b.mu.Lock()
	step, total, name, done, bytes := b.step, b.total, b.name, b.done, b.bytes
	b.mu.Unlock()
	fmt.Fprint(b.w, "\r\x1b[K"+Line(step, total, name, done, bytes, time.Since(b.start)))
}

// Line renders one state of the bar: "[=====>      ] 2/4 name  12.3/45.6 MiB  1m02s".
func Line(step, total int, name string, done, bytes int64, elapsed time.Duration) string {
	frac := 0.0
	if total > 0 {
		frac = float64(max(step-1, 0)) / float64(total)
		if bytes > 0 {
			frac += float64(done) / float64(bytes) / float64(total)
		}
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	s := fmt.Sprintf("[%s] %d/%d %s", bar, step, total, name)
	if bytes > 0 {
		s += fmt.Sprintf("  %.1f/%.1f MiB", float64(done)/(1<<20), float64(bytes)/(1<<20))
	}
	return s + "  " + elapsed.Round(time.Second).String()
}
