package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// TestKojidKilledMidBuild SIGKILLs a real `kib kojid` process (built with
// the chaos tag: a stand-in build step that runs a host command) while its
// imageBuilderBuildArch task builds: the build's host command dies with
// it, the hub frees the dead host's tasks after HostTimeout, a second kib
// kojid completes them, and the NVR has one complete image build, imported
// and tagged once.
func TestKojidKilledMidBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kib kojid processes; run without -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("kib kojid builds images and needs root")
	}
	bin := chaosKib(t)
	hub := kojitest.New(t, kojitest.Options{})
	hub.SetScheduler(kojitest.SchedulerTimeouts{ReadyTimeout: time.Second, HostTimeout: 3 * time.Second})
	hub.AddUser("alice", "secret", "image")
	hub.AddTag("debian-12-build", "x86_64", "", nil)
	hub.AddTag("debian-12-images", "", "", nil)
	hub.AddTarget("debian-12", "debian-12-build", "debian-12-images")
	hub.AddRepo("debian-12-build")
	dir := t.TempDir()
	token := fmt.Sprintf("kib-kojid-kill-%d-%d", os.Getpid(), time.Now().UnixNano())
	// Host 1's build would run for ten minutes, as a sleep with an
	// argument of its own: it must die with kib kojid, not when it ends.
	longSleep := fmt.Sprintf("%d.%03d", 600, os.Getpid()%1000)
	startHost := func(name, buildTime string) *exec.Cmd {
		hub.AddHost(name, "pw-"+name, []string{"x86_64"}, "image")
		pw := writeFile(t, dir, name+".pw", "pw-"+name+"\n")
		log, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "kojid", "--server", hub.URL, "--user", name, "--password-file", pw,
			"--work-dir", filepath.Join(dir, name, "work"), "--state-dir", filepath.Join(dir, name, "state"),
			"--cache-dir", filepath.Join(dir, "cache"), "--interval", "200ms", "--wait-poll", "500ms",
			"--min-space", "0", "--max-load", "0")
		cmd.Env = append(os.Environ(), "KIB_CHAOS_TOKEN="+token, "KIB_CHAOS_BUILD_TIME="+buildTime)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { _ = cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			}
			log.Close()
			b, _ := os.ReadFile(log.Name())
			t.Logf("kib kojid %s log:\n%s", name, tail(string(b), 6000))
		})
		return cmd
	}
	waitFor := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %v", what, d)
			}
		}
	}

	host1 := startHost("builder1", longSleep+"s")
	alicePW := writeFile(t, dir, "alice.pw", "secret\n")
	out, err := runKib(t, "koji", "image-builder-build", "--server", hub.URL, "--user", "alice", "--password-file", alicePW,
		"--arch", "x86_64", "--nowait", "debian-12", "phoenix", "1", "tar")
	if err != nil {
		t.Fatalf("image-builder-build: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Created task: (\d+) \(tar\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("image-builder-build output lacks the task:\n%s", out)
	}
	parent, _ := strconv.Atoi(m[1])

	// Host 1 holds the parent and the arch task, and the arch task's build
	// runs its host command.
	var held []int
	waitFor("builder1 building", 30*time.Second, func() bool {
		held = hub.HostTasks("builder1")
		return len(held) == 2 && len(processesWith(token)) > 0 && len(processesWith("sleep "+longSleep)) > 0
	})
	if err := host1.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = host1.Wait()
	waitFor("the build's processes die with the SIGKILLed kib kojid", 5*time.Second, func() bool {
		return len(processesWith(token)) == 0 && len(processesWith("sleep "+longSleep)) == 0
	})
	if h := hub.HostTasks("builder1"); len(h) != 2 {
		t.Fatalf("builder1 holds %v right after dying, want the parent and the arch task %v", h, held)
	}

	// Host 2 completes the tasks the hub frees after HostTimeout.
	startHost("builder2", "200ms")
	ctx := context.Background()
	c, err := hub.Connector("alice", "secret")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var info *koji.TaskInfo
	waitFor("the parent task finishes", 45*time.Second, func() bool {
		info, err = c.GetTaskInfo(ctx, int64(parent), false)
		if err != nil {
			t.Fatal(err)
		}
		return info.State == koji.TaskClosed || info.State == koji.TaskCanceled || info.State == koji.TaskFailed
	})
	if info.State != koji.TaskClosed {
		res, _ := c.GetTaskResult(ctx, int64(parent))
		t.Fatalf("parent task %d state %d: %v", parent, info.State, res)
	}
	for _, id := range held {
		if h := hub.TaskHost(id); h != "builder2" {
			t.Errorf("task %d finished on %q, want builder2", id, h)
		}
	}
	var builds []koji.Build
	if err := c.CallInto(ctx, &builds, "listBuilds"); err != nil {
		t.Fatal(err)
	}
	complete := 0
	for _, b := range builds {
		if b.NVR != "phoenix-1-1" {
			continue
		}
		switch b.State {
		case koji.BuildComplete:
			complete++
		case koji.BuildFailed:
			t.Logf("builder1's build row %d was failed", b.ID)
		default:
			t.Errorf("build %+v is neither complete nor failed", b)
		}
	}
	if complete != 1 {
		t.Errorf("%d complete builds of phoenix-1-1, want 1: %+v", complete, builds)
	}
	imports := 0
	for _, m := range hub.Calls() {
		if strings.HasSuffix(m, "completeImageBuild") {
			imports++
		}
	}
	if imports != 1 {
		t.Errorf("completeImageBuild called %d times, want 1", imports)
	}
	if tagged := hub.TaggedBuilds("debian-12-images"); len(tagged) != 1 {
		t.Errorf("tagged builds %v, want one", tagged)
	}
}
