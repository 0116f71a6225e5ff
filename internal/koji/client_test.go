package koji_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/koji/kojitest"
)

var fastRetry = koji.RetryPolicy{MaxRetries: 5, Interval: time.Millisecond, MaxInterval: 5 * time.Millisecond, Deadline: 30 * time.Second}

type testBundle struct {
	hub    *kojitest.Hub
	client *koji.Client
}

// setup starts a hub with user "alice" (password "secret", CG "kib") and a
// client logged in as alice.
func setup(t *testing.T, opts koji.Options) *testBundle {
	t.Helper()
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("alice", "secret")
	hub.AddContentGenerator("kib", "alice")
	if opts.Retry == (koji.RetryPolicy{}) {
		opts.Retry = fastRetry
	}
	c, err := koji.New(hub.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(context.Background(), "alice", "secret"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	return &testBundle{hub: hub, client: c}
}

func sessionCallnum(t *testing.T, c *koji.Client) any {
	t.Helper()
	v, err := c.Call(context.Background(), "getSessionInfo")
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)["callnum"]
}

func TestLoginAndCallnum(t *testing.T) {
	b := setup(t, koji.Options{})
	ctx := context.Background()
	id, key := b.client.SessionID()
	if id == 0 || key == "" {
		t.Fatalf("no session after login: %d %q", id, key)
	}
	// Read-only calls do not advance the hub's stored callnum.
	if got := sessionCallnum(t, b.client); got != nil {
		t.Errorf("stored callnum after read-only calls = %v, want nil", got)
	}
	// A committing call stores its callnum: calls so far were 0 (getSessionInfo), 1 (this).
	if err := b.client.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := sessionCallnum(t, b.client); got != int64(1) {
		t.Errorf("stored callnum = %v, want 1", got)
	}
	v, err := b.client.Call(ctx, "getLoggedInUser")
	if err != nil {
		t.Fatal(err)
	}
	if v.(map[string]any)["name"] != "alice" {
		t.Errorf("getLoggedInUser = %v", v)
	}
}

func TestLoginErrors(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	hub.AddUser("alice", "secret")
	c, err := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Login(context.Background(), "alice", "wrong")
	if !errors.Is(err, koji.ErrAuth) {
		t.Fatalf("err = %v, want AuthError", err)
	}
	if c.LoggedIn() {
		t.Error("logged in after a failed login")
	}
	for _, bad := range []string{"ftp://x/kojihub", "://", "http:///kojihub"} {
		if _, err := koji.New(bad, koji.Options{}); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		inject    kojitest.Injection
		method    string
		wantErr   error
		wantCalls int
	}{
		{"dropped before processing is re-sent", kojitest.Injection{Method: "exclusiveSession", Drop: true}, "exclusiveSession", nil, 2},
		{"HTTP 503 is re-sent", kojitest.Injection{Method: "exclusiveSession", Status: http.StatusServiceUnavailable}, "exclusiveSession", nil, 2},
		{"answer lost after commit is RetryError = committed", kojitest.Injection{Method: "exclusiveSession", DropResponse: true}, "exclusiveSession", koji.ErrCommitted, 2},
		{"whitelisted method may repeat its callnum", kojitest.Injection{Method: "getLoggedInUser", DropResponse: true}, "getLoggedInUser", nil, 2},
		{"faults are not retried", kojitest.Injection{Method: "exclusiveSession", Fault: &koji.Fault{Code: koji.CodeServerOffline, String: "offline"}}, "exclusiveSession", koji.ErrServerOffline, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, koji.Options{})
			b.hub.Inject(tt.inject)
			_, err := b.client.Call(context.Background(), tt.method)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			calls := b.hub.Calls()
			n := 0
			for _, m := range calls {
				if m == tt.method {
					n++
				}
			}
			if n != tt.wantCalls {
				t.Errorf("hub saw %d %s calls, want %d (%v)", n, tt.method, tt.wantCalls, calls)
			}
		})
	}
}

func TestRetryGivesUp(t *testing.T) {
	b := setup(t, koji.Options{Retry: koji.RetryPolicy{MaxRetries: 2, Interval: time.Millisecond, Deadline: time.Minute}})
	for range 3 {
		b.hub.Inject(kojitest.Injection{Method: "echo", Status: http.StatusBadGateway})
	}
	_, err := b.client.Call(context.Background(), "echo")
	var te *koji.TransportError
	if !errors.As(err, &te) || te.StatusCode != http.StatusBadGateway {
		t.Fatalf("err = %v, want TransportError with 502", err)
	}
}

func TestDeadline(t *testing.T) {
	b := setup(t, koji.Options{Retry: koji.RetryPolicy{MaxRetries: 100, Interval: time.Millisecond, Deadline: 50 * time.Millisecond}})
	b.hub.Inject(kojitest.Injection{Method: "echo", Delay: time.Minute})
	_, err := b.client.Call(context.Background(), "echo")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestSessionRenewal(t *testing.T) {
	b := setup(t, koji.Options{})
	id, key := b.client.SessionID()
	b.hub.ExpireSessions()
	if _, err := b.client.Call(context.Background(), "getLoggedInUser"); err != nil {
		t.Fatalf("call after expiry: %v", err)
	}
	id2, key2 := b.client.SessionID()
	if id2 != id || key2 == key {
		t.Errorf("renewal: session %d/%s -> %d/%s, want same id and a new key", id, key, id2, key2)
	}
}

func TestSequenceError(t *testing.T) {
	b := setup(t, koji.Options{})
	ctx := context.Background()
	if err := b.client.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Call(ctx, "sharedSession"); err != nil {
		t.Fatal(err)
	}
	// A second client with the same session restarts its callnum at 0.
	other, _ := koji.New(b.hub.URL, koji.Options{Retry: fastRetry})
	id, key := b.client.SessionID()
	other.SetSession(id, key)
	_, err := other.Call(ctx, "echo")
	if !errors.Is(err, koji.ErrSequence) {
		t.Fatalf("err = %v, want SequenceError", err)
	}
}

func TestLogout(t *testing.T) {
	b := setup(t, koji.Options{})
	ctx := context.Background()
	id, key := b.client.SessionID()
	if err := b.client.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if b.client.LoggedIn() {
		t.Error("still logged in")
	}
	other, _ := koji.New(b.hub.URL, koji.Options{Retry: fastRetry})
	other.SetSession(id, key)
	if _, err := other.Call(ctx, "echo"); !errors.Is(err, koji.ErrAuth) {
		t.Errorf("call on closed session: %v, want AuthError", err)
	}
}

func TestMulticall(t *testing.T) {
	b := setup(t, koji.Options{})
	res, err := b.client.Multicall(context.Background(), []koji.MultiCall{
		{Method: "getKojiVersion"},
		{Method: "getBuild", Args: []any{999999, koji.Kwargs{"strict": true}}},
		{Method: "nosuchmethod"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Value != kojitest.Version {
		t.Errorf("result 0 = %+v", res[0])
	}
	if !errors.Is(res[1].Err, koji.ErrGeneric) {
		t.Errorf("result 1 = %+v, want GenericError", res[1])
	}
	var f *koji.Fault
	if !errors.As(res[2].Err, &f) || f.String != "Invalid method: nosuchmethod" {
		t.Errorf("result 2 = %+v", res[2])
	}
}

// certs makes a CA and a client certificate for CN=name signed by it.
func certs(t *testing.T, name string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kojitest CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSSLLogin(t *testing.T) {
	pool, cert := certs(t, "builder1.example.com")
	hub := kojitest.New(t, kojitest.Options{TLS: true, ClientCAs: pool})
	roots := x509.NewCertPool()
	roots.AddCert(hub.Server.Certificate())
	for _, tt := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"with certificate", []tls.Certificate{cert}, true},
		{"without certificate", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// As CertTLSConfig(..., allowTLS13=false) makes it: TLS 1.2 with renegotiation.
			cfg := &tls.Config{RootCAs: roots, Certificates: tt.certs, MaxVersion: tls.VersionTLS12, Renegotiation: tls.RenegotiateOnceAsClient}
			c, err := koji.New(hub.URL, koji.Options{TLSConfig: cfg, Retry: fastRetry})
			if err != nil {
				t.Fatal(err)
			}
			err = c.SSLLogin(context.Background())
			if !tt.ok {
				if !errors.Is(err, koji.ErrAuth) {
					t.Fatalf("err = %v, want AuthError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.Call(context.Background(), "getLoggedInUser")
			if err != nil {
				t.Fatal(err)
			}
			if m := v.(map[string]any); m["name"] != "builder1.example.com" || m["authtype"] != int64(2) {
				t.Errorf("user = %v", m)
			}
		})
	}
}

type fakeNegotiator struct{ token []byte }

func (f fakeNegotiator) Token(context.Context, string) ([]byte, error) { return f.token, nil }

func TestGSSAPILogin(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	// A GSS-API InitialContextToken header with the SPNEGO OID, then a body
	// the hub's acceptor checks.
	tok := append([]byte{0x60, 0x20, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02}, []byte("negTokenInit for kib@EXAMPLE.COM")...)
	hub.AcceptNegotiate(func(b []byte) (string, bool) {
		return "kib@EXAMPLE.COM", slices.Equal(b, tok)
	})
	c, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err := c.GSSAPILogin(context.Background(), fakeNegotiator{tok}); err != nil {
		t.Fatal(err)
	}
	v, err := c.Call(context.Background(), "getLoggedInUser")
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(map[string]any); m["name"] != "kib" || m["authtype"] != int64(3) {
		t.Errorf("user = %v", m)
	}
	c2, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err := c2.GSSAPILogin(context.Background(), fakeNegotiator{[]byte("not a token at all")}); !errors.Is(err, koji.ErrAuth) {
		t.Errorf("bad token: %v, want AuthError", err)
	}
}

func TestSubsession(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{})
	ctx := context.Background()
	hub.AddHost("builder1", "pw", []string{"x86_64"}, "image")
	c, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry})
	if err := c.Login(ctx, "builder1", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := c.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subsession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A subsession of an exclusive host session may make host calls, and
	// runs its own callnum sequence concurrently with the parent.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 10 {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- c.UpdateHost(ctx, 0, true, nil) }()
		go func() { defer wg.Done(); errs <- sub.UpdateHost(ctx, 0, true, nil) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.ExclusiveSession(ctx, false); err == nil || !strings.Contains(err.Error(), "subsessions cannot become exclusive") {
		t.Errorf("exclusive subsession: %v", err)
	}
	id, _ := sub.SessionID()
	if err := c.LogoutChild(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Call(ctx, "echo"); !errors.Is(err, koji.ErrAuth) {
		t.Errorf("call on a closed subsession: %v", err)
	}
}

// TestLegacyHubSessions: a hub that does not announce header-auth gets the
// session in the query string, as Koji's own client does.
func TestLegacyHubSessions(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{LegacySessions: true})
	hub.AddUser("alice", "secret")
	c, _ := koji.New(hub.URL, koji.Options{Retry: fastRetry, UploadChunkSize: 4})
	ctx := context.Background()
	if err := c.Login(ctx, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	v, err := c.Call(ctx, "getLoggedInUser")
	if err != nil || v == nil || v.(map[string]any)["name"] != "alice" {
		t.Fatalf("getLoggedInUser = %v, %v", v, err)
	}
	if err := c.ExclusiveSession(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := sessionCallnum(t, c); got != int64(1) {
		t.Errorf("stored callnum = %v, want 1", got)
	}
	if _, err := c.Upload(ctx, "legacy", "f.txt", strings.NewReader("hello world"), 11, nil); err != nil {
		t.Fatal(err)
	}
}

func TestOfflineRetry(t *testing.T) {
	policy := fastRetry
	policy.OfflineRetry, policy.OfflineInterval = true, time.Millisecond
	b := setup(t, koji.Options{Retry: policy})
	for range 3 {
		b.hub.Inject(kojitest.Injection{Method: "getKojiVersion", Fault: &koji.Fault{Code: koji.CodeServerOffline, String: "server is offline"}})
	}
	v, err := b.client.Call(context.Background(), "getKojiVersion")
	if err != nil || v != kojitest.Version {
		t.Fatalf("after the hub came back: %v, %v", v, err)
	}
	// Without OfflineRetry the fault is returned at once.
	plain := setup(t, koji.Options{})
	plain.hub.Inject(kojitest.Injection{Method: "getKojiVersion", Fault: &koji.Fault{Code: koji.CodeServerOffline, String: "server is offline"}})
	if _, err := plain.client.Call(context.Background(), "getKojiVersion"); !errors.Is(err, koji.ErrServerOffline) {
		t.Errorf("err = %v, want ServerOffline", err)
	}
}

// TestLoginFailsAtOnce: a login that can never succeed (403 from
// ssllogin, a client certificate the hub's CAs did not sign, a hub
// certificate the client does not trust) is tried once, with a hint,
// although the retry policy would wait a minute between attempts.
func TestLoginFailsAtOnce(t *testing.T) {
	slow := koji.RetryPolicy{MaxRetries: 30, Interval: time.Minute, MaxInterval: time.Minute, Deadline: time.Hour}
	pool, _ := certs(t, "builder1.example.com")
	_, stranger := certs(t, "builder1.example.com") // same name, another CA
	hub := kojitest.New(t, kojitest.Options{TLS: true, ClientCAs: pool})
	roots := x509.NewCertPool()
	roots.AddCert(hub.Server.Certificate())
	tests := []struct {
		name   string
		inject *kojitest.Injection
		cfg    *tls.Config
		hint   string
	}{
		{"403 from ssllogin", &kojitest.Injection{Method: "sslLogin", Status: http.StatusForbidden}, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}, "hub refused the login"},
		{"client certificate from an unknown CA", nil, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{stranger}, MaxVersion: tls.VersionTLS12}, "CA the hub trusts"},
		{"hub certificate not trusted", nil, &tls.Config{Certificates: []tls.Certificate{stranger}}, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.inject != nil {
				hub.Inject(*tt.inject)
			}
			before := len(hub.Calls())
			c, err := koji.New(hub.URL, koji.Options{TLSConfig: tt.cfg, Retry: slow})
			if err != nil {
				t.Fatal(err)
			}
			// Were the login retried, the second retry would wait a minute.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = c.SSLLogin(ctx)
			if err == nil {
				t.Fatal("login succeeded")
			}
			if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "retrying stopped") {
				t.Fatalf("the login was retried: %v", err)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("err = %v, want a hint containing %q", err, tt.hint)
			}
			if n := len(hub.Calls()) - before; n > 1 {
				t.Errorf("hub saw %d requests, want at most 1", n)
			}
		})
	}
}

// TestSessionKeyNeverInErrors: with a hub that takes the session in the
// query string, a failed call's error does not quote the session key.
func TestSessionKeyNeverInErrors(t *testing.T) {
	hub := kojitest.New(t, kojitest.Options{LegacySessions: true})
	hub.AddUser("alice", "secret")
	policy := fastRetry
	policy.MaxRetries = -1
	c, _ := koji.New(hub.URL, koji.Options{Retry: policy})
	ctx := context.Background()
	if err := c.Login(ctx, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	_, key := c.SessionID()
	hub.Server.CloseClientConnections()
	hub.Server.Close()
	_, err := c.Call(ctx, "getLoggedInUser")
	if err == nil {
		t.Fatal("a call to a closed hub succeeded")
	}
	if key == "" || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "session-key=REDACTED") {
		t.Errorf("error = %q; must not contain the session key %q", err, key)
	}
}
