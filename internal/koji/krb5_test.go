package koji_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/koji"
)

// The full Kerberos login is tested against a real KDC by
// scripts/koji-krb5-test.sh (build tag krb5); these are the input checks.
func TestNewKeytabNegotiatorErrors(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "krb5.conf")
	if err := os.WriteFile(conf, []byte("[libdefaults]\n default_realm = KIB.TEST\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notKeytab := filepath.Join(dir, "bad.keytab")
	if err := os.WriteFile(notKeytab, []byte("not a keytab"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		principal, keytab, conf, want string
	}{
		{"kib", notKeytab, conf, "must be name@REALM"},
		{"kib@", notKeytab, conf, "must be name@REALM"},
		{"kib@KIB.TEST", notKeytab, filepath.Join(dir, "missing.conf"), "kerberos config"},
		{"kib@KIB.TEST", filepath.Join(dir, "missing.keytab"), conf, "keytab"},
		{"kib@KIB.TEST", notKeytab, conf, "keytab"},
	} {
		if _, err := koji.NewKeytabNegotiator(tt.principal, tt.keytab, tt.conf); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewKeytabNegotiator(%q, %q, %q) = %v, want %q", tt.principal, tt.keytab, tt.conf, err, tt.want)
		}
	}
}
