package koji

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kib-project/kib/internal/redact"
)

// RetryPolicy says how calls are retried after transport errors (connection
// failures, timeouts, HTTP errors, truncated responses). Faults are never
// retried. The zero value means the defaults below.
type RetryPolicy struct {
	// MaxRetries is the number of retries after the first attempt.
	// The default is 30 (Koji's max_retries); negative means none.
	MaxRetries int
	// Interval is the wait before the second retry (the first is
	// immediate, as in Koji); it doubles up to MaxInterval. The default is 1s.
	Interval time.Duration
	// MaxInterval caps the wait between retries. The default is 20s
	// (Koji's retry_interval).
	MaxInterval time.Duration
	// Deadline bounds one call including all its retries. The default is
	// 10 minutes.
	Deadline time.Duration
	// Anonymous also retries calls made without a session (Koji's
	// anon_retry). The default is false.
	Anonymous bool
	// OfflineRetry retries calls the hub refuses with ServerOffline (1014),
	// every OfflineInterval, within Deadline (Koji's offline_retry, which
	// kojid turns on). The default is false: the fault is returned.
	OfflineRetry bool
	// OfflineInterval is the wait between offline retries. The default is
	// 20s (Koji's offline_retry_interval).
	OfflineInterval time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxRetries == 0 {
		p.MaxRetries = 30
	}
	if p.MaxRetries < 0 {
		p.MaxRetries = 0
	}
	if p.Interval <= 0 {
		p.Interval = time.Second
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = 20 * time.Second
	}
	if p.Deadline <= 0 {
		p.Deadline = 10 * time.Minute
	}
	if p.OfflineInterval <= 0 {
		p.OfflineInterval = 20 * time.Second
	}
	return p
}

// wait returns the pause before retry number n (1-based).
func (p RetryPolicy) wait(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := p.Interval
	for i := 2; i < n && d < p.MaxInterval; i++ {
		d *= 2
	}
	return min(d, p.MaxInterval)
}

// Options configure a Client. The zero value is usable.
type Options struct {
	// HTTPClient is used for every request. If nil, a client with its own
	// transport using TLSConfig is made. Its Timeout should be zero; use
	// contexts and RetryPolicy.Deadline instead.
	HTTPClient *http.Client
	// TLSConfig is used when HTTPClient is nil, e.g. from CertTLSConfig.
	TLSConfig *tls.Config
	// Logger receives debug logs of calls and retries. The default
	// discards them.
	Logger *slog.Logger
	// Retry is the retry policy for transport errors.
	Retry RetryPolicy
	// UploadChunkSize is the size of raw upload chunks. The default is 8
	// MiB: the hub takes raw chunks of any size (no MaxRequestLength
	// limit) and the chunks of one file go one at a time, so each costs a
	// round trip; Koji's own client sends 1 MiB (upload_blocksize).
	UploadChunkSize int
	// UploadParallel bounds how many files UploadFiles sends at once. The
	// default is 4.
	UploadParallel int
	// UploadVerify is the whole-file check after an upload; the default is
	// UploadVerifyKoji.
	UploadVerify UploadVerify
}

// UploadVerify says how an upload is checked as a whole, after every chunk's
// size and adler32 have been checked.
type UploadVerify int

// Whole-file checks of an upload.
const (
	// UploadVerifyKoji does what Koji's own client does: the hub's file
	// size is checked, and after any resumed chunk also the whole file's
	// adler32 (checkUpload verify="adler32"). CGImport then checks every
	// output's digest.
	UploadVerifyKoji UploadVerify = iota
	// UploadVerifySHA256 has the hub hash the whole file with sha256
	// (checkUpload verify="sha256"), one more read of the file on the hub.
	UploadVerifySHA256
)

// DefaultUploadChunkSize is the raw upload chunk size when
// Options.UploadChunkSize is not set.
const DefaultUploadChunkSize = 8 << 20

// Client talks to one Koji hub. It is safe for concurrent use. The XML-RPC
// calls of a logged-in client are sent one at a time, so the hub sees its
// callnums in order; raw upload chunks, which commit nothing on the hub, may
// run in parallel. For concurrent work that changes hub state use
// Subsession, as kojid does.
type Client struct {
	base   *url.URL
	http   *http.Client
	log    *slog.Logger
	retry  RetryPolicy
	chunk  int
	para   int
	verify UploadVerify
	mu     sync.Mutex
	callMu sync.Mutex // serialises session calls: callnums reach the hub in order
	sess   *session
	relog  func(ctx context.Context) error // renews an expired session
	sleepF func(ctx context.Context, d time.Duration) error
}

type session struct {
	id      int64
	key     string
	callnum int64
	// headerAuth: the hub announced "header-auth" at login, so the session
	// goes in Koji-Session-* headers; otherwise in the query string, as
	// Koji's client does with hubs older than 1.30.
	headerAuth bool
}

// reqAuth is how one request identifies its session.
type reqAuth struct {
	hdr   http.Header
	query url.Values
}

func (a reqAuth) loggedIn() bool {
	return a.hdr.Get("Koji-Session-Id") != "" || a.query.Get("session-id") != ""
}

// New returns a client for the hub at serverURL (e.g.
// https://koji.example.com/kojihub). It does no I/O.
func New(serverURL string, opts Options) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("koji: server URL %q: %w", serverURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("koji: server URL %q: scheme must be http or https", serverURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("koji: server URL %q: no host", serverURL)
	}
	u.RawQuery, u.Fragment = "", ""
	hc := opts.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if opts.TLSConfig != nil {
			tr.TLSClientConfig = opts.TLSConfig.Clone()
			// A TLS 1.2 client config must not be upgraded by HTTP/2.
			tr.ForceAttemptHTTP2 = false
		}
		hc = &http.Client{Transport: tr}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chunk := opts.UploadChunkSize
	if chunk <= 0 {
		chunk = DefaultUploadChunkSize
	}
	para := opts.UploadParallel
	if para <= 0 {
		para = 4
	}
	return &Client{
		base:   u,
		http:   hc,
		log:    log,
		retry:  opts.Retry.withDefaults(),
		chunk:  chunk,
		para:   para,
		verify: opts.UploadVerify,
		sleepF: func(ctx context.Context, d time.Duration) error {
			if d <= 0 {
				return ctx.Err()
			}
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		},
	}, nil
}

// CertTLSConfig returns a TLS configuration presenting the client
// certificate in certFile/keyFile and trusting caFile (system roots if
// empty). Koji's stock httpd setup asks for the certificate only on
// /ssllogin, by TLS 1.2 renegotiation or TLS 1.3 post-handshake
// authentication; Go supports only the former, so unless allowTLS13 is set
// the configuration is capped at TLS 1.2 and accepts one renegotiation.
func CertTLSConfig(certFile, keyFile, caFile string, allowTLS13 bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Renegotiation: tls.RenegotiateOnceAsClient}
	if !allowTLS13 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	if certFile != "" {
		if keyFile == "" {
			keyFile = certFile // Koji's client cert files hold both.
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("koji: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("koji: server CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("koji: server CA %s: no PEM certificates", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// SessionID returns the current session id and key, or 0 and "" when not
// logged in.
func (c *Client) SessionID() (int64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return 0, ""
	}
	return c.sess.id, c.sess.key
}

// LoggedIn reports whether the client holds a session.
func (c *Client) LoggedIn() bool {
	id, _ := c.SessionID()
	return id != 0
}

// ErrCommitted is returned (wrapped together with the RetryError fault) when
// a call was re-sent after a transport error and the hub answered that the
// first attempt had already committed. The call took effect; its result is
// lost.
var ErrCommitted = errors.New("koji: first attempt of a retried call was committed")

// TransportError is a failure to get an XML-RPC answer from the hub (network
// error, HTTP status other than 200, unreadable body).
type TransportError struct {
	Method     string
	StatusCode int // 0 unless the hub answered with an HTTP error
	Err        error
}

// Error implements error.
func (e *TransportError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("koji: %s: HTTP %d: %v", e.Method, e.StatusCode, e.Err)
	}
	return fmt.Sprintf("koji: %s: %v", e.Method, e.Err)
}

// Unwrap returns the cause.
func (e *TransportError) Unwrap() error { return e.Err }

// Call calls method with args (a trailing Kwargs becomes keyword arguments)
// and returns the decoded result. Faults are returned as *Fault errors.
func (c *Client) Call(ctx context.Context, method string, args ...any) (any, error) {
	return c.call(ctx, "", method, args, true)
}

// CallInto calls method and stores the result in out (a pointer), converting
// through JSON field names: XML-RPC structs fill Go structs by json tags.
func (c *Client) CallInto(ctx context.Context, out any, method string, args ...any) error {
	v, err := c.Call(ctx, method, args...)
	if err != nil {
		return err
	}
	return Convert(v, out)
}

// Convert stores a decoded XML-RPC value in out, matching struct fields by
// their json tags.
func Convert(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("koji: converting result: %w", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("koji: converting result to %T: %w", out, err)
	}
	return nil
}

// call runs one logical call: it encodes the body once, and re-sends the
// same body with the same session headers (callnum included) after
// transport errors. renew allows one session renewal on AuthExpired.
func (c *Client) call(ctx context.Context, subpath, method string, args []any, renew bool) (any, error) {
	var body bytes.Buffer
	if err := EncodeCall(&body, method, args...); err != nil {
		return nil, err
	}
	if c.LoggedIn() {
		c.callMu.Lock()
		defer c.callMu.Unlock()
	}
	auth := c.sessionAuth()
	v, err := c.send(ctx, subpath, method, body.Bytes(), auth, c.retryAllowed(auth, method))
	if renew && errors.Is(err, ErrAuthExpired) {
		c.mu.Lock()
		relog := c.relog
		c.mu.Unlock()
		if relog != nil {
			c.log.DebugContext(ctx, "koji session expired, renewing", "method", method)
			if rerr := relog(ctx); rerr != nil {
				return nil, fmt.Errorf("koji: renewing expired session: %w (after %w)", rerr, err)
			}
			auth = c.sessionAuth()
			v, err = c.send(ctx, subpath, method, body.Bytes(), auth, c.retryAllowed(auth, method))
		}
	}
	return v, err
}

func (c *Client) retryAllowed(auth reqAuth, method string) bool {
	if method == "logout" {
		return false
	}
	return auth.loggedIn() || c.retry.Anonymous
}

// sessionAuth returns the session identification of the next request,
// taking the next callnum.
func (c *Client) sessionAuth() reqAuth {
	a := reqAuth{hdr: http.Header{}, query: url.Values{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return a
	}
	id, cn := strconv.FormatInt(c.sess.id, 10), strconv.FormatInt(c.sess.callnum, 10)
	c.sess.callnum++
	if c.sess.headerAuth {
		a.hdr.Set("Koji-Session-Id", id)
		a.hdr.Set("Koji-Session-Key", c.sess.key)
		a.hdr.Set("Koji-Session-Callnum", cn)
	} else {
		a.query.Set("session-id", id)
		a.query.Set("session-key", c.sess.key)
		a.query.Set("callnum", cn)
	}
	return a
}

// send posts body, retrying transport errors per the policy.
func (c *Client) send(ctx context.Context, subpath, method string, body []byte, auth reqAuth, retry bool) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, c.retry.Deadline)
	defer cancel()
	for attempt := 1; ; attempt++ {
		v, err := c.post(ctx, subpath, nil, method, "text/xml", bytes.NewReader(body), int64(len(body)), auth)
		if err == nil {
			return v, nil
		}
		var f *Fault
		if errors.As(err, &f) {
			if attempt > 1 && f.Code == CodeRetry {
				return nil, fmt.Errorf("koji: %s: %w: %w", method, ErrCommitted, err)
			}
			if f.Code == CodeServerOffline && c.retry.OfflineRetry {
				c.log.DebugContext(ctx, "koji hub offline, waiting", "method", method, "wait", c.retry.OfflineInterval)
				if serr := c.sleepF(ctx, c.retry.OfflineInterval); serr != nil {
					return nil, fmt.Errorf("%w (waiting for the hub stopped: %w)", err, serr)
				}
				attempt = 0 // like Koji, an offline hub does not use up retries
				continue
			}
			return nil, err
		}
		if !retry || !retryable(err) || attempt > c.retry.MaxRetries || ctx.Err() != nil {
			return nil, err
		}
		wait := c.retry.wait(attempt)
		c.log.DebugContext(ctx, "koji call failed, retrying", "method", method, "attempt", attempt, "wait", wait, "err", err)
		if serr := c.sleepF(ctx, wait); serr != nil {
			return nil, fmt.Errorf("%w (retrying stopped: %w)", err, serr)
		}
	}
}

// retryable reports whether a transport error may go away on retry:
// connection failures, timeouts, truncated answers, HTTP 5xx, 408 and 429.
// What a retry cannot heal fails at once: TLS verification failures on
// either side (the hub's certificate, or a TLS alert by which the hub
// refuses ours) and other HTTP 4xx (403 from ssllogin, 401, 404).
func retryable(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || isTLSAlert(err) || errors.As(err, &rh) {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var te *TransportError
	if !errors.As(err, &te) {
		return false
	}
	switch {
	case te.StatusCode == 0, te.StatusCode >= 500:
		return true
	case te.StatusCode == http.StatusRequestTimeout, te.StatusCode == http.StatusTooManyRequests:
		return true
	}
	return false
}

// isTLSAlert reports whether err is a TLS alert the peer sent (crypto/tls
// returns it as a *net.OpError with Op "remote error"), e.g. "unknown
// certificate authority" when the hub refuses the client certificate.
func isTLSAlert(err error) bool {
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// post sends one HTTP request and decodes the XML-RPC answer.
func (c *Client) post(ctx context.Context, subpath string, query url.Values, method, ctype string, body io.Reader, size int64, auth reqAuth) (any, error) {
	u := *c.base
	if subpath != "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + subpath
	}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	for k, v := range auth.query {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return nil, &TransportError{Method: method, Err: redact.Err(err)}
	}
	req.ContentLength = size
	for k, vs := range auth.hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL may carry the session (session-id, session-key): it
		// must not reach error strings.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact.String(ue.URL)
		}
		return nil, &TransportError{Method: method, Err: redact.Err(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &TransportError{Method: method, StatusCode: resp.StatusCode, Err: errors.New(strings.TrimSpace(string(msg)))}
	}
	v, err := DecodeResponse(resp.Body)
	if err != nil {
		var f *Fault
		if errors.As(err, &f) {
			return nil, err
		}
		return nil, &TransportError{Method: method, Err: err}
	}
	// Drain so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return v, nil
}
