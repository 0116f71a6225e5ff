//go:build httpd

package koji_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

// httpdConf is Koji's stock arrangement (kojihub/app/httpd.conf): the
// client certificate is asked for only on /kojihub/ssllogin, which makes
// mod_ssl renegotiate (TLS 1.2) or use post-handshake auth (TLS 1.3). The
// hub behind the proxy gets mod_ssl's verdict in headers.
const httpdConf = `ServerRoot "/usr/lib/apache2"
ServerName 127.0.0.1
Listen 127.0.0.1:{{PORT}}
PidFile {{DIR}}/httpd.pid
ErrorLog {{DIR}}/error.log
LogLevel info ssl:info
Mutex file:{{DIR}}
User www-data
Group www-data
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule socache_shmcb_module modules/mod_socache_shmcb.so
LoadModule ssl_module modules/mod_ssl.so
LoadModule headers_module modules/mod_headers.so
LoadModule proxy_module modules/mod_proxy.so
LoadModule proxy_http_module modules/mod_proxy_http.so
SSLSessionCache shmcb:{{DIR}}/scache(512000)
<VirtualHost 127.0.0.1:{{PORT}}>
	SSLEngine on
	SSLProtocol -all +TLSv1.2 +TLSv1.3
	SSLCertificateFile {{DIR}}/server.pem
	SSLCertificateKeyFile {{DIR}}/server.key
	SSLCACertificateFile {{DIR}}/ca.pem
	ProxyPass /kojihub {{HUB}}
	<Location /kojihub/ssllogin>
		SSLVerifyClient require
		SSLVerifyDepth 2
		RequestHeader set X-Ssl-Client-Verify "%{SSL_CLIENT_VERIFY}s"
		RequestHeader set X-Ssl-Client-S-Dn-Cn "%{SSL_CLIENT_S_DN_CN}s"
	</Location>
</VirtualHost>
`

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func makeCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// TestSSLLoginStockHttpd runs sslLogin through Apache httpd with Koji's
// per-Location client certificate request. Run with
// scripts/koji-httpd-test.sh (needs apache2).
func TestSSLLoginStockHttpd(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, caKey := makeCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kib test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	srv, srvKey := makeCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	cli, cliKey := makeCert(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "builder1.example.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", srv.Raw)
	k, _ := x509.MarshalECPrivateKey(srvKey)
	writePEM(t, filepath.Join(dir, "server.key"), "EC PRIVATE KEY", k)
	// The client certificate and key in one file, as Koji's client uses them.
	k, _ = x509.MarshalECPrivateKey(cliKey)
	writePEM(t, filepath.Join(dir, "client.pem"), "CERTIFICATE", cli.Raw)
	f, _ := os.OpenFile(filepath.Join(dir, "client.pem"), os.O_APPEND|os.O_WRONLY, 0)
	_ = pem.Encode(f, &pem.Block{Type: "EC PRIVATE KEY", Bytes: k})
	f.Close()

	hub := kojitest.New(t, kojitest.Options{ProxyClientCert: true})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := strings.NewReplacer("{{PORT}}", fmt.Sprint(port), "{{DIR}}", dir, "{{HUB}}", hub.URL).Replace(httpdConf)
	if err := os.WriteFile(filepath.Join(dir, "httpd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	httpd := exec.Command("apache2", "-f", filepath.Join(dir, "httpd.conf"), "-DFOREGROUND")
	httpd.Stderr = os.Stderr
	// Apache's workers die with it, and it dies with the test binary.
	httpd.SysProcAttr = hostcmd.SysProcAttr()
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-httpd.Process.Pid, syscall.SIGKILL)
		_ = httpd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("httpd error.log:\n%s", b)
		}
	})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("httpd did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/kojihub", port)
	ctx := context.Background()

	// The configuration kib uses by default: TLS 1.2, one renegotiation.
	cfg, err := koji.CertTLSConfig(filepath.Join(dir, "client.pem"), "", filepath.Join(dir, "ca.pem"), false)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := koji.New(url, koji.Options{TLSConfig: cfg, Retry: fastRetry})
	if err := c.SSLLogin(ctx); err != nil {
		t.Fatalf("sslLogin with TLS 1.2 renegotiation: %v", err)
	}
	v, err := c.Call(ctx, "getLoggedInUser")
	if err != nil || v.(map[string]any)["name"] != "builder1.example.com" {
		t.Fatalf("getLoggedInUser = %v, %v", v, err)
	}
	t.Logf("sslLogin through httpd with TLS 1.2 renegotiation: logged in as %v", v.(map[string]any)["name"])

	// TLS 1.3 would need post-handshake auth, which Go does not do.
	cfg13, _ := koji.CertTLSConfig(filepath.Join(dir, "client.pem"), "", filepath.Join(dir, "ca.pem"), true)
	c13, _ := koji.New(url, koji.Options{TLSConfig: cfg13, Retry: koji.RetryPolicy{MaxRetries: -1}})
	err = c13.SSLLogin(ctx)
	var te *koji.TransportError
	if !errors.As(err, &te) || te.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "TLS 1.2 renegotiation") {
		t.Errorf("sslLogin with TLS 1.3: %v, want HTTP 403", err)
	} else {
		t.Logf("with TLS 1.3 allowed, as expected: %v", err)
	}
}
