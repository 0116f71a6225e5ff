//go:build ignore

// gotest runs `go test -json` with the given arguments and prints, as they
// happen, one line per finished test and package with its duration, the
// output of every failed test, and at the end the slowest tests. CI logs
// then show where the time went even when a run is cut short.
//
// Usage: go run scripts/gotest.go [go test flags] [packages]
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type timing struct {
	name    string
	elapsed float64
}

func main() {
	cmd := exec.Command("go", append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotest:", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "gotest:", err)
		os.Exit(2)
	}
	// Interrupts go to go test (same process group); wait for it.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	start := time.Now()
	short := func(pkg string) string {
		if i := strings.Index(pkg, "/kib/"); i >= 0 {
			return pkg[i+5:]
		}
		return pkg
	}
	outputs := map[string][]string{} // package/test → output lines
	var tests []timing
	failed := 0
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text())
			continue
		}
		key := e.Package + "\x00" + e.Test
		stamp := fmt.Sprintf("[%6.0fs]", time.Since(start).Seconds())
		switch e.Action {
		case "output":
			outputs[key] = append(outputs[key], e.Output)
			if e.Test == "" && strings.HasPrefix(e.Output, "panic: test timed out") {
				fmt.Print(e.Output)
			}
		case "pass", "skip":
			if e.Test == "" {
				fmt.Printf("%s ok   %s (%.1fs)\n", stamp, short(e.Package), e.Elapsed)
			} else if !strings.Contains(e.Test, "/") {
				fmt.Printf("%s %-4s %s %s (%.1fs)\n", stamp, strings.ToUpper(e.Action), short(e.Package), e.Test, e.Elapsed)
				tests = append(tests, timing{short(e.Package) + " " + e.Test, e.Elapsed})
			}
			delete(outputs, key)
		case "fail":
			failed++
			fmt.Printf("%s FAIL %s %s (%.1fs)\n", stamp, short(e.Package), e.Test, e.Elapsed)
			fmt.Print(strings.Join(outputs[key], ""))
			delete(outputs, key)
		}
	}
	err = cmd.Wait()
	// Output of packages that never finished (a build failure, a crash).
	for key, lines := range outputs {
		if strings.HasSuffix(key, "\x00") && len(lines) > 0 && err != nil {
			fmt.Print(strings.Join(lines, ""))
		}
	}
	slices.SortFunc(tests, func(a, b timing) int { return int((b.elapsed - a.elapsed) * 1000) })
	fmt.Printf("\nslowest tests (total %s):\n", time.Since(start).Round(time.Second))
	for _, t := range tests[:min(10, len(tests))] {
		fmt.Printf("  %7.1fs  %s\n", t.elapsed, t.name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "go test: %v (%d failed)\n", err, failed)
		os.Exit(1)
	}
}
