package kojid

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// ComposerConfig is the [composer] part of koji-osbuild's builder.conf:
// where the compose service is and how kojid authenticates to it.
type ComposerConfig struct {
	// Server is the compose service's base URL (e.g. https://composer.example.org);
	// the Cloud API is under /api/image-builder-composer/v2/. Required.
	Server string
	// CertFile and KeyFile are the client certificate for mTLS (ssl_cert,
	// "cert, key" in builder.conf); empty means none.
	CertFile, KeyFile string
	// CAFile verifies the server (ssl_verify as a path); empty means the
	// system roots.
	CAFile string
	// Insecure skips server verification (ssl_verify = false).
	Insecure bool
	// OAuth, if set, gets bearer tokens by the client-credentials grant
	// ([composer:oauth] in builder.conf).
	OAuth *OAuthConfig
	// Proxy routes http and https requests through this proxy URL.
	Proxy string
	// HTTPClient, if set, is used as is instead of one built from the TLS
	// settings (tests, local mode).
	HTTPClient *http.Client
	// Retries is how often a request that met a 5xx status or a connection
	// error is retried, with exponential backoff from 100 ms. Default 5.
	Retries int
}

// OAuthConfig are the client credentials of [composer:oauth].
type OAuthConfig struct {
	ClientID, ClientSecret, TokenURL string
}

const cloudAPIBase = "/api/image-builder-composer/v2/"

// cloudAPI is a Cloud API v2 client for the calls the builder plugin makes.
type cloudAPI struct {
	cfg  ComposerConfig
	base string
	http *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

func newCloudAPI(cfg ComposerConfig) (*cloudAPI, error) {
	if cfg.Server == "" {
		return nil, errors.New("composer: server is required")
	}
	u, err := url.Parse(cfg.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("composer: server %q: not an http(s) URL", cfg.Server)
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.OAuth != nil && (cfg.OAuth.ClientID == "" || cfg.OAuth.TokenURL == "") {
		return nil, errors.New("composer oauth: client_id and token_url are required")
	}
	c := &cloudAPI{cfg: cfg, base: strings.TrimRight(cfg.Server, "/") + cloudAPIBase, http: cfg.HTTPClient}
	if c.http == nil {
		tc := &tls.Config{InsecureSkipVerify: cfg.Insecure} //nolint:gosec // ssl_verify = false, as configured
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("composer: ssl_verify: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("composer: ssl_verify: %s holds no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		if cfg.CertFile != "" {
			key := cfg.KeyFile
			if key == "" {
				key = cfg.CertFile
			}
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, key)
			if err != nil {
				return nil, fmt.Errorf("composer: ssl_cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		if cfg.Proxy != "" {
			pu, err := url.Parse(cfg.Proxy)
			if err != nil || pu.Host == "" {
				return nil, fmt.Errorf("composer: proxy %q: not a URL", cfg.Proxy)
			}
			tr.Proxy = http.ProxyURL(pu)
		}
		c.http = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	}
	return c, nil
}

// cloudAPIError is a request the service answered with an unexpected
// status.
type cloudAPIError struct {
	Op     string
	Status int
	Body   string
}

func (e *cloudAPIError) Error() string {
	return fmt.Sprintf("failed to %s: %d %s", e.Op, e.Status, e.Body)
}

// bearer returns a valid OAuth token, fetching one when none is cached or
// it expired (or force is set).
func (c *cloudAPI) bearer(ctx context.Context, force bool) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !force && c.token != "" && (c.expires.IsZero() || time.Now().Before(c.expires)) {
		return c.token, nil
	}
	o := c.cfg.OAuth
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {o.ClientID}, "client_secret": {o.ClientSecret}}
	created := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("authenticating via OAuth: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("failed to authenticate via SSO/OAuth: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var tok struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("OAuth token response from %s: no access_token", o.TokenURL)
	}
	c.token, c.expires = tok.AccessToken, time.Time{}
	if tok.ExpiresIn > 0 {
		// Refresh a little early, so a token does not expire in flight.
		c.expires = created.Add(time.Duration(tok.ExpiresIn*float64(time.Second)) - 5*time.Second)
	}
	return c.token, nil
}

// do sends one request, retrying 5xx answers and connection errors with
// backoff and a 401 once with a fresh token; it returns the final status
// and body.
func (c *cloudAPI) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	delay := 100 * time.Millisecond
	refreshed := false
	for attempt := 0; ; attempt++ {
		status, data, err := c.once(ctx, method, path, body, false)
		if err == nil && status == http.StatusUnauthorized && c.cfg.OAuth != nil && !refreshed {
			refreshed = true
			status, data, err = c.once(ctx, method, path, body, true)
		}
		retry := err != nil || status >= 500
		if method == http.MethodPost {
			// A compose must not be created twice: retry only what surely
			// never reached the service.
			var op *net.OpError
			retry = (err != nil && errors.As(err, &op) && op.Op == "dial") || status == http.StatusServiceUnavailable
		}
		if !retry || attempt >= c.cfg.Retries || ctx.Err() != nil {
			return status, data, err
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func (c *cloudAPI) once(ctx context.Context, method, path string, body []byte, fresh bool) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.OAuth != nil {
		tok, err := c.bearer(ctx, fresh)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	return resp.StatusCode, data, err
}

// createCompose posts a compose request and returns the compose id.
func (c *cloudAPI) createCompose(ctx context.Context, req []byte) (string, error) {
	status, data, err := c.do(ctx, http.MethodPost, "compose", req)
	if err != nil {
		return "", fmt.Errorf("failed to create the compose request: %w", err)
	}
	if status != http.StatusCreated {
		return "", &cloudAPIError{Op: "create the compose request", Status: status, Body: strings.TrimSpace(string(data))}
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.ID == "" {
		return "", fmt.Errorf("compose service answered 201 without a compose id: %.200s", data)
	}
	return out.ID, nil
}

func (c *cloudAPI) get(ctx context.Context, op, path string) ([]byte, error) {
	status, data, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to %s: %w", op, err)
	}
	if status != http.StatusOK {
		return nil, &cloudAPIError{Op: op, Status: status, Body: strings.TrimSpace(string(data))}
	}
	return data, nil
}

// composeStatus is the part of GET /composes/{id} the handler reads.
type composeStatus struct {
	Status        string `json:"status"`
	ImageStatuses []struct {
		Status       string          `json:"status"`
		UploadStatus json.RawMessage `json:"upload_status,omitempty"`
		Error        *struct {
			ID      int             `json:"id"`
			Reason  string          `json:"reason"`
			Details json.RawMessage `json:"details,omitempty"`
		} `json:"error,omitempty"`
	} `json:"image_statuses"`
	KojiStatus *struct {
		BuildID *int64 `json:"build_id"`
	} `json:"koji_status"`
}

// status gets a compose's status, parsed and as sent.
func (c *cloudAPI) status(ctx context.Context, id string) (*composeStatus, []byte, error) {
	data, err := c.get(ctx, "get the compose status", "composes/"+url.PathEscape(id))
	if err != nil {
		return nil, nil, err
	}
	var st composeStatus
	if err := json.Unmarshal(data, &st); err != nil || st.Status == "" || st.ImageStatuses == nil {
		return nil, nil, fmt.Errorf("compose %s: malformed status (status and image_statuses are required): %.200s", id, data)
	}
	st.Status = strings.ToLower(st.Status)
	return &st, data, nil
}

// composeLogs is GET /composes/{id}/logs.
type composeLogs struct {
	ImageBuilds []json.RawMessage `json:"image_builds"`
	Koji        *struct {
		Init   json.RawMessage `json:"init"`
		Import json.RawMessage `json:"import"`
	} `json:"koji"`
}

func (c *cloudAPI) logs(ctx context.Context, id string) (*composeLogs, error) {
	data, err := c.get(ctx, "get the compose logs", "composes/"+url.PathEscape(id)+"/logs")
	if err != nil {
		return nil, err
	}
	var l composeLogs
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("compose logs: %w", err)
	}
	return &l, nil
}

func (c *cloudAPI) manifests(ctx context.Context, id string) ([]json.RawMessage, error) {
	data, err := c.get(ctx, "get the compose manifests", "composes/"+url.PathEscape(id)+"/manifests")
	if err != nil {
		return nil, err
	}
	var m struct {
		Manifests []json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("compose manifests: %w", err)
	}
	return m.Manifests, nil
}
