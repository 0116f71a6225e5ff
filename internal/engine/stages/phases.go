package stages

import (
	"bufio"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// The inner phases of the mmdebstrap stage, timed from the marks its hooks
// write (name and time, one a line) and from dpkg's status log (time, then
// dpkg's status-logger line), and logged as "phase done" lines:
//
//	setup      mmdebstrap start to the end of its setup hooks
//	extract    unpacking the essential packages' files before dpkg runs
//	unpack     dpkg unpacking every package
//	configure  dpkg configuring them (maintainer scripts)
//	triggers   dpkg running triggers
//	install    the whole dpkg run (unpack, configure and triggers)
//	initramfs  building the initramfs, once, after every package
//	cleanup    mmdebstrap's hooks and cleanup after that
//	compress   kib compressing the initramfs
//
// Any single dpkg step of a second or more is logged too ("slow step"), so a
// maintainer script that costs much shows by name.

// mark is one time stamp: a hook's, or a line of dpkg's status log.
type mark struct {
	at   time.Time
	what string
}

// readMarks reads "name seconds.fraction" or "seconds.fraction text" lines;
// timeFirst says which. A missing file gives no marks.
func readMarks(file string, timeFirst bool) []mark {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mark
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ts, what string
		var ok bool
		if timeFirst {
			ts, what, ok = strings.Cut(sc.Text(), " ")
		} else {
			what, ts, ok = strings.Cut(sc.Text(), " ")
		}
		if !ok {
			continue
		}
		sec, err := strconv.ParseFloat(strings.TrimSpace(ts), 64)
		if err != nil {
			continue
		}
		out = append(out, mark{at: time.Unix(0, int64(sec*1e9)), what: what})
	}
	return out
}

// find returns the time of the first mark named name.
func find(marks []mark, name string) (time.Time, bool) {
	for _, m := range marks {
		if m.what == name {
			return m.at, true
		}
	}
	return time.Time{}, false
}

// phase is one named duration.
type phase struct {
	name string
	d    time.Duration
}

// dpkgPhases splits dpkg's status log into unpack, configure and triggers,
// and lists the steps of a second or more. A step lasts from its
// "processing:" line to the next line.
func dpkgPhases(lines []mark) (phases []phase, slow []phase) {
	if len(lines) == 0 {
		return nil, nil
	}
	start, end := lines[0].at, lines[len(lines)-1].at
	firstConf := end
	var trig time.Duration
	for i, l := range lines {
		action, ok := strings.CutPrefix(l.what, "processing: ")
		if !ok {
			continue
		}
		// A step runs until dpkg's next processing line.
		next := end
		for _, m := range lines[i+1:] {
			if strings.HasPrefix(m.what, "processing: ") {
				next = m.at
				break
			}
		}
		d := next.Sub(l.at)
		switch {
		case strings.HasPrefix(action, "configure:") && l.at.Before(firstConf):
			firstConf = l.at
		case strings.HasPrefix(action, "trigproc:"):
			trig += d
		}
		if d >= time.Second {
			slow = append(slow, phase{strings.TrimSpace(action), d.Round(time.Millisecond)})
		}
	}
	phases = []phase{
		{"unpack", firstConf.Sub(start)},
		{"configure", end.Sub(firstConf) - trig},
		{"triggers", trig},
	}
	return phases, slow
}

// logPhases logs the stage's phases from the hooks' marks, dpkg's status
// log and the times kib took itself.
func logPhases(log *slog.Logger, stage string, start, done time.Time, hooks, dpkg []mark, compress time.Duration) {
	if log == nil {
		return
	}
	at := func(name string) (time.Time, bool) { return find(hooks, name) }
	emit := func(name string, d time.Duration) {
		log.Info("phase done", "stage", stage, "phase", name, "duration", d.Round(time.Millisecond))
	}
	prev := start
	for _, p := range []string{"setup", "extract", "install", "initramfs", "cleanup", "copy"} {
		t, ok := at(p)
		if !ok {
			continue
		}
		if p == "install" {
			phases, slow := dpkgPhases(dpkg)
			for _, ph := range phases {
				emit(ph.name, ph.d)
			}
			for _, s := range slow {
				log.Info("slow step", "stage", stage, "step", s.name, "duration", s.d)
			}
		}
		emit(p, t.Sub(prev))
		prev = t
	}
	if _, ok := at("cleanup"); !ok {
		emit("cleanup", done.Sub(prev))
	}
	if compress > 0 {
		emit("compress", compress)
	}
}
