//go:build krb5

package koji_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/service"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// TestGSSAPIRealKDC logs in with a keytab against a real MIT KDC set up by
// scripts/koji-krb5-test.sh; kojitest validates the SPNEGO token with the
// service keytab, as mod_auth_gssapi would. Run through that script.
func TestGSSAPIRealKDC(t *testing.T) {
	dir := os.Getenv("KIB_KRB5_DIR")
	if dir == "" {
		t.Fatal("KIB_KRB5_DIR must name the directory scripts/koji-krb5-test.sh prepared")
	}
	svc, err := keytab.Load(filepath.Join(dir, "http.keytab"))
	if err != nil {
		t.Fatal(err)
	}
	hub := kojitest.New(t, kojitest.Options{})
	hub.AcceptNegotiate(func(tok []byte) (string, bool) {
		var st spnego.SPNEGOToken
		if err := st.Unmarshal(tok); err != nil {
			t.Logf("unmarshal: %v", err)
			return "", false
		}
		ok, ctx, status := spnego.SPNEGOService(svc, service.DecodePAC(false)).AcceptSecContext(&st)
		if !ok {
			t.Logf("accept: %v", status)
			return "", false
		}
		creds := ctx.Value("github.com/jcmturner/gokrb5/v8/ctxCredentials").(*credentials.Credentials)
		return creds.UserName() + "@" + creds.Domain(), true
	})
	n, err := koji.NewKeytabNegotiator("kib@KIB.TEST", filepath.Join(dir, "kib.keytab"), filepath.Join(dir, "krb5.conf"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := koji.New(hub.URL, koji.Options{})
	ctx := context.Background()
	if err := c.GSSAPILogin(ctx, n); err != nil {
		t.Fatal(err)
	}
	v, err := c.Call(ctx, "getLoggedInUser")
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(map[string]any); m["name"] != "kib" || m["authtype"] != int64(3) {
		t.Errorf("user %v", m)
	}
	t.Logf("logged in via a real KDC as %v", v.(map[string]any)["name"])
}
