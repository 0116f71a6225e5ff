package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestServeAndWorkerRefuseBadSettings(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "kib.toml")
	if err := os.WriteFile(conf, []byte("[serve]\nlisten = \"0.0.0.0:8080\"\nstate_dir = \""+dir+"\"\n[worker]\nservr = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"plain HTTP off loopback", []string{"serve", "--config", conf}, "plain HTTP is for loopback only"},
		{"tls cert without key", []string{"serve", "--tls-cert", "c.pem", "--state-dir", dir}, "--tls-cert and --tls-key"},
		{"mtls without allow-list", []string{"serve", "--tls-cert", "c", "--tls-key", "k", "--client-ca", "ca", "--state-dir", dir}, "--allowed-domain"},
		{"negative workers", []string{"serve", "--workers", "-1", "--state-dir", dir}, "--workers"},
		{"unknown config key", []string{"worker", "--config", conf}, "servr: unknown setting"},
		{"worker without server", []string{"worker"}, "--server: required"},
		{"misspelled table", []string{"serve", "--config", writeConf(t, "[serv]\nlisten = \"127.0.0.1:0\"\n")}, "[serv]: unknown table"},
		{"setting outside a table", []string{"serve", "--config", writeConf(t, "listen = \"127.0.0.1:0\"\n[serve]\n")}, "listen: a setting outside a table"},
		{"remote workers without a worker identity", []string{"serve", "--remote-workers", "--tls-cert", "c", "--tls-key", "k", "--client-ca", "ca", "--allowed-domain", "tenant.example.org", "--state-dir", dir}, "--worker-allowed-domain"},
		{"jwt remote workers without an audience", []string{"serve", "--remote-workers", "--tls-cert", "c", "--tls-key", "k", "--jwks-url", "https://sso.example.org/jwks", "--state-dir", dir}, "--worker-audience"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tt.args)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func writeConf(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kib.toml")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var settingRE = regexp.MustCompile(`^[a-z_]+ = `)

// tableRE matches a commented-out table header such as [upload."aws.s3"].
var tableRE = regexp.MustCompile(`^\[[a-z_."0-9]+\]$`)

func TestExampleConfigParses(t *testing.T) {
	example := filepath.Join("..", "..", "dist", "kib.toml.example")
	// The commented-out settings must be valid too.
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "# "); ok && (settingRE.MatchString(rest) || tableRE.MatchString(rest)) {
			l = rest
		}
		lines = append(lines, l)
	}
	uncommented := filepath.Join(t.TempDir(), "kib.toml")
	if err := os.WriteFile(uncommented, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readUploadSettings(uncommented); err != nil {
		t.Errorf("[upload] tables: %v", err)
	}
	if _, err := readArtifactSettings(uncommented, t.TempDir()); err != nil {
		t.Errorf("[artifacts] table: %v", err)
	}
	for _, conf := range []string{example, uncommented} {
		for _, c := range []struct {
			section string
			cmd     func() *cobra.Command
		}{{"serve", newServeCmd}, {"worker", newWorkerCmd}, {"kojid", newKojidCmd}} {
			cmd := c.cmd()
			if err := applyConfigFile(cmd, conf, c.section); err != nil {
				t.Errorf("%s [%s]: %v", conf, c.section, err)
			}
		}
	}
}
