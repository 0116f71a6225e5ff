package composer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MTLSAuth admits clients whose verified certificate (the TLS listener
// requires and verifies it against the client CA) matches one of
// AllowedDomains. Composes made this way have no tenant.
type MTLSAuth struct {
	AllowedDomains []string
}

var _ Authenticator = (*MTLSAuth)(nil)

// Tenant implements Authenticator.
func (a *MTLSAuth) Tenant(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return "", &Error{Code: ErrUnauthenticated, Err: errors.New("no verified client certificate")}
	}
	leaf := r.TLS.VerifiedChains[0][0]
	for _, d := range a.AllowedDomains {
		if leaf.VerifyHostname(d) == nil {
			return "", nil
		}
	}
	return "", &Error{Code: ErrUnauthorized, Err: fmt.Errorf("client certificate %q matches none of the allowed domains", leaf.Subject.CommonName)}
}

// JWTAuth admits requests with a bearer JWT signed by a key of the JWKS at
// KeysURL. The tenant is "org-" plus the first non-empty claim among
// TenantClaims; composes are visible to their tenant only.
type JWTAuth struct {
	KeysURL      string
	TenantClaims []string
	// HTTP fetches the JWKS; default http.DefaultClient.
	HTTP *http.Client
	// Audience, if set, must be in a token's aud claim. The worker API's
	// JWTAuth sets it (e.g. "kib-worker"), so a tenant's token, issued
	// for the compose API, is refused there.
	Audience string

	mu      sync.Mutex
	keys    map[string]crypto.PublicKey
	fetched time.Time
}

var _ Authenticator = (*JWTAuth)(nil)

// Tenant implements Authenticator.
func (a *JWTAuth) Tenant(r *http.Request) (string, error) {
	claims, err := a.verify(r)
	if err != nil {
		return "", err
	}
	for _, c := range a.TenantClaims {
		if v, ok := claims[c]; ok {
			if s := fmt.Sprint(v); s != "" {
				return "org-" + s, nil
			}
		}
	}
	return "", apiErr(ErrTenantNotFound, "none of the claims "+strings.Join(a.TenantClaims, ", ")+" is set")
}

// Admit admits a request whose token verifies (signature, expiry and, if
// set, Audience), whatever its tenant: the worker API's check.
func (a *JWTAuth) Admit(r *http.Request) error {
	_, err := a.verify(r)
	return err
}

// Admit admits a request whose client certificate matches AllowedDomains:
// the worker API's check, with a list separate from the tenants'.
func (a *MTLSAuth) Admit(r *http.Request) error {
	_, err := a.Tenant(r)
	return err
}

func (a *JWTAuth) verify(r *http.Request) (jwt.MapClaims, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		if tok, ok = strings.CutPrefix(h, "bearer "); !ok {
			return nil, &Error{Code: ErrUnauthenticated, Err: errors.New("no bearer token")}
		}
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return a.key(r.Context(), kid)
	}, a.parserOptions()...)
	if err != nil {
		return nil, &Error{Code: ErrUnauthenticated, Err: fmt.Errorf("verifying JWT: %w", err)}
	}
	return claims, nil
}

func (a *JWTAuth) parserOptions() []jwt.ParserOption {
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}), jwt.WithExpirationRequired()}
	if a.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.Audience))
	}
	return opts
}

// key returns the key kid, fetching the JWKS again (at most every 10s)
// when the key is unknown, so that rotated keys are picked up.
func (a *JWTAuth) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, ok := a.keys[kid]; ok {
		return k, nil
	}
	if time.Since(a.fetched) < 10*time.Second && a.keys != nil {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	keys, err := fetchJWKS(ctx, a.HTTP, a.KeysURL)
	if err != nil {
		return nil, err
	}
	a.keys, a.fetched = keys, time.Now()
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

func fetchJWKS(ctx context.Context, hc *http.Client, url string) (map[string]crypto.PublicKey, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", url, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("fetching JWKS %s: %s", url, resp.Status)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			Kty string `json:"kty"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decoding JWKS: %w", err)
	}
	b64 := func(s string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil
		}
		return new(big.Int).SetBytes(b)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		switch k.Kty {
		case "RSA":
			n, e := b64(k.N), b64(k.E)
			if n == nil || e == nil {
				continue
			}
			keys[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			var c elliptic.Curve
			switch k.Crv {
			case "P-256":
				c = elliptic.P256()
			case "P-384":
				c = elliptic.P384()
			default:
				continue
			}
			x, y := b64(k.X), b64(k.Y)
			if x == nil || y == nil {
				continue
			}
			// The uncompressed point: 0x04 || X || Y, each padded to the
			// curve's size; the parser checks that it is on the curve.
			n := (c.Params().BitSize + 7) / 8
			if len(x.Bytes()) > n || len(y.Bytes()) > n {
				continue
			}
			point := make([]byte, 1+2*n)
			point[0] = 4
			x.FillBytes(point[1 : 1+n])
			y.FillBytes(point[1+n:])
			pub, err := ecdsa.ParseUncompressedPublicKey(c, point)
			if err != nil {
				continue
			}
			keys[k.Kid] = pub
		}
	}
	return keys, nil
}
