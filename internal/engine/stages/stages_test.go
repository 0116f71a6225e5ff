package stages

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/stageopt"
)

func fakeTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.MkdirAll(filepath.Join(tree, "usr/share/zoneinfo/Europe"), 0o755)
	os.WriteFile(filepath.Join(tree, "usr/share/zoneinfo/Europe/Prague"), []byte("TZif"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc/group"), []byte("root:x:0:\nstaff:x:50:\n"), 0o644)
	return tree
}

func runTreeStage(t *testing.T, env *Env, typ string, opts any) error {
	t.Helper()
	raw, _ := json.Marshal(opts)
	s, err := New(typ, raw)
	if err != nil {
		t.Fatal(err)
	}
	return s.Run(context.Background(), env)
}

func TestTreeStages(t *testing.T) {
	tree := fakeTree(t)
	env := &Env{Tree: tree}
	if err := runTreeStage(t, env, "hostname", Hostname{Hostname: "web1"}); err != nil {
		t.Fatal(err)
	}
	if err := runTreeStage(t, env, "timezone", Timezone{Zone: "Europe/Prague"}); err != nil {
		t.Fatal(err)
	}
	if err := runTreeStage(t, env, "timezone", Timezone{Zone: "Mars/Olympus"}); err == nil || !strings.Contains(err.Error(), "tzdata") {
		t.Errorf("unknown zone: %v", err)
	}
	if err := runTreeStage(t, env, "locale", Locale{Language: "C.UTF-8"}); err != nil {
		t.Fatal(err)
	}
	if err := runTreeStage(t, env, "locale", Locale{Language: "de_DE.UTF-8"}); err == nil || !strings.Contains(err.Error(), "locales package") {
		t.Errorf("locale without locale-gen: %v", err)
	}
	// A symlink in the tree must not redirect a write outside it.
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("keep"), 0o644)
	os.Symlink(outside, filepath.Join(tree, "etc/motd"))
	files := Files{Files: []stageopt.FileSpec{
		{Path: "/etc/motd", Data: "hi\n", Mode: "0640", User: "alice", Group: "staff"},
		{Path: "/opt/app/conf", Data: "x", Mode: "0600"},
	}}
	if err := runTreeStage(t, env, "files", files); err != nil {
		t.Fatal(err)
	}
	if err := runTreeStage(t, env, "files", Files{Files: []stageopt.FileSpec{{Path: "/etc/x", Mode: "0644", User: "mallory"}}}); err == nil || !strings.Contains(err.Error(), `"mallory" not found`) {
		t.Errorf("unknown user: %v", err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep" {
		t.Error("a write followed a symlink out of the tree")
	}
	checks := map[string]string{"etc/hostname": "web1\n", "etc/timezone": "Europe/Prague\n", "etc/default/locale": "LANG=C.UTF-8\n", "etc/motd": "hi\n", "opt/app/conf": "x"}
	for p, want := range checks {
		if b, err := os.ReadFile(filepath.Join(tree, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if l, _ := os.Readlink(filepath.Join(tree, "etc/localtime")); l != "/usr/share/zoneinfo/Europe/Prague" {
		t.Errorf("/etc/localtime -> %q", l)
	}
	st, _ := os.Stat(filepath.Join(tree, "etc/motd"))
	if st.Mode().Perm() != 0o640 {
		t.Errorf("motd mode %o", st.Mode().Perm())
	}
}

func TestServices(t *testing.T) {
	tree := fakeTree(t)
	unitDir := filepath.Join(tree, "usr/lib/systemd/system")
	os.MkdirAll(unitDir, 0o755)
	os.WriteFile(filepath.Join(unitDir, "kib-demo.service"), []byte("[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"), 0o644)
	env := &Env{Tree: tree}
	if err := runTreeStage(t, env, "services", Services{Enabled: []string{"kib-demo.service"}}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tree, "etc/systemd/system/multi-user.target.wants/kib-demo.service")
	if target, err := os.Readlink(link); err != nil || !strings.HasSuffix(target, "kib-demo.service") {
		t.Fatalf("enable did not link the unit: %q, %v", target, err)
	}
	if err := runTreeStage(t, env, "services", Services{Disabled: []string{"kib-demo.service"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Fatal("disable left the link")
	}
	err := runTreeStage(t, env, "services", Services{Enabled: []string{"no-such.service"}})
	if err == nil || !strings.Contains(err.Error(), `"no-such.service"`) {
		t.Fatalf("enabling a missing unit: %v", err)
	}
}

func TestTimezoneNTPAndKeyboard(t *testing.T) {
	tree := fakeTree(t)
	env := &Env{Tree: tree}
	ntp := Timezone{Zone: "UTC", NTPServers: []string{"0.debian.pool.ntp.org", "192.0.2.1"}}
	if err := runTreeStage(t, env, "timezone", ntp); err == nil || !strings.Contains(err.Error(), "systemd-timesyncd") {
		t.Errorf("ntp servers without timesyncd: %v", err)
	}
	os.MkdirAll(filepath.Join(tree, "usr/lib/systemd"), 0o755)
	os.WriteFile(filepath.Join(tree, "usr/lib/systemd/systemd-timesyncd"), nil, 0o755)
	if err := runTreeStage(t, env, "timezone", ntp); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, "etc/systemd/timesyncd.conf.d/kib.conf")); string(b) != "[Time]\nNTP=0.debian.pool.ntp.org 192.0.2.1\n" {
		t.Errorf("timesyncd.conf.d/kib.conf = %q", b)
	}
	if _, err := New("timezone", json.RawMessage(`{"zone":"UTC","ntp_servers":["a b"]}`)); err == nil || !strings.Contains(err.Error(), "ntp_servers[0]") {
		t.Errorf("bad ntp server: %v", err)
	}
	if err := runTreeStage(t, env, "locale", Locale{Language: "C.UTF-8", Keyboard: "de"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, "etc/default/keyboard")); !strings.Contains(string(b), `XKBLAYOUT="de"`) {
		t.Errorf("/etc/default/keyboard = %q", b)
	}
}

// TestEveryOptionsTypeRuns checks that every stage type with options in
// stageopt runs here, and that each stage reads the pipelines its options
// name: a type defined over its options type does not inherit InputNames.
func TestEveryOptionsTypeRuns(t *testing.T) {
	if got, want := Types(), stageopt.Types(); !slices.Equal(got, want) {
		t.Fatalf("stage types %v, options types %v", got, want)
	}
	for _, name := range Types() {
		opts := registry[name].opts()
		s := registry[name].run(opts)
		_, optsRead := opts.(stageopt.InputReader)
		_, stageReads := s.(InputReader)
		if optsRead != stageReads {
			t.Errorf("%s: options name input pipelines: %v; stage reads them: %v", name, optsRead, stageReads)
		}
	}
}
