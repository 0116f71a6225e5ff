package composer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kib-project/kib/internal/composer"
)

func jwksServer(t *testing.T, key *rsa.PublicKey) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kid": "k1", "kty": "RSA", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		}}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJWTAuth(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks := jwksServer(t, &key.PublicKey)
	b := setup(t, "sqlite", &composer.JWTAuth{KeysURL: jwks.URL, TenantClaims: []string{"rh-org-id", "account_id"}})
	sign := func(k *rsa.PrivateKey, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	orgA := sign(key, jwt.MapClaims{"rh-org-id": "a", "exp": exp})
	orgB := sign(key, jwt.MapClaims{"account_id": "b", "exp": exp})
	call := func(token, method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, b.srv.URL+base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, body := call(orgA, "POST", "/compose", kojiBody)
	if status != 201 {
		t.Fatalf("POST: %d %v", status, body)
	}
	id := body["id"].(string)
	tests := []struct {
		name   string
		token  string
		status int
		code   string
	}{
		{"owner", orgA, 200, ""},
		{"other tenant", orgB, 404, "15"},
		{"no token", "", 401, "401"},
		{"wrong key", sign(other, jwt.MapClaims{"rh-org-id": "a", "exp": exp}), 401, "401"},
		{"expired", sign(key, jwt.MapClaims{"rh-org-id": "a", "exp": time.Now().Add(-time.Hour).Unix()}), 401, "401"},
		{"no tenant claim", sign(key, jwt.MapClaims{"sub": "x", "exp": exp}), 400, "28"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := call(tt.token, "GET", "/composes/"+id, "")
			if status != tt.status || (tt.code != "" && body["id"] != tt.code) {
				t.Errorf("got %d %v, want %d code %s", status, body, tt.status, tt.code)
			}
		})
	}
	if status, _ := call("", "GET", "/errors", ""); status != 200 {
		t.Errorf("/errors must be public: %d", status)
	}

	// The worker API admits tokens for its audience only: a tenant's token
	// is refused there.
	workers := &composer.JWTAuth{KeysURL: jwks.URL, Audience: "kib-worker"}
	admit := func(token string) error {
		r := httptest.NewRequest("POST", "/api/worker/v1/jobs", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return workers.Admit(r)
	}
	if err := admit(orgA); err == nil {
		t.Error("a tenant's token was admitted to the worker API")
	}
	if err := admit(sign(key, jwt.MapClaims{"aud": "kib-worker", "sub": "worker-1", "exp": exp})); err != nil {
		t.Errorf("a worker's token: %v", err)
	}
	if err := admit(sign(other, jwt.MapClaims{"aud": "kib-worker", "exp": exp})); err == nil {
		t.Error("a worker token signed by an unknown key was admitted")
	}
}

func TestMTLSAuth(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	client := func(name string) tls.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	b := setup(t, "sqlite", &composer.MTLSAuth{AllowedDomains: []string{"koji-builder.example.org"}})
	b.srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv := httptest.NewUnstartedServer(b.srv.Config.Handler)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	tests := []struct {
		name   string
		cert   string
		status int
	}{
		{"allowed", "koji-builder.example.org", 200},
		{"not allowed", "intruder.example.org", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := srv.Client()
			tr := hc.Transport.(*http.Transport).Clone()
			tr.TLSClientConfig.Certificates = []tls.Certificate{client(tt.cert)}
			hc = &http.Client{Transport: tr}
			resp, err := hc.Get(srv.URL + base + "/composes/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}

func TestJWTAuthECKeys(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kid": "e1", "kty": "EC", "crv": "P-256", "alg": "ES256",
			"x": base64.RawURLEncoding.EncodeToString(point[1:33]),
			"y": base64.RawURLEncoding.EncodeToString(point[33:]),
		}}})
	}))
	defer srv.Close()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"rh-org-id": "a", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "e1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+s)
	a := &composer.JWTAuth{KeysURL: srv.URL, TenantClaims: []string{"rh-org-id"}}
	if tenant, err := a.Tenant(r); err != nil || tenant != "org-a" {
		t.Errorf("Tenant = %q, %v", tenant, err)
	}
}
