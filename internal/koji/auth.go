package koji

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// LoginResult is what login and sslLogin return.
type LoginResult struct {
	SessionID  int64  `json:"session-id"`
	SessionKey string `json:"session-key"`
	HeaderAuth bool   `json:"header-auth"`
}

// Login logs in with a user name and password (Koji's login call). An
// expired session is renewed later by calling login again with renew=True.
func (c *Client) Login(ctx context.Context, user, password string) error {
	if user == "" {
		return fmt.Errorf("koji: login: user name is empty")
	}
	login := func(ctx context.Context, renew bool) error {
		args := []any{user, password}
		if renew {
			args = append(args, nil, Kwargs{"renew": true})
		}
		return c.doLogin(ctx, "", "login", args)
	}
	return c.startSession(ctx, login)
}

// SSLLogin logs in with the TLS client certificate configured in Options
// (sslLogin on <server>/ssllogin).
func (c *Client) SSLLogin(ctx context.Context) error {
	login := func(ctx context.Context, renew bool) error {
		var args []any
		if renew {
			args = []any{Kwargs{"renew": true}}
		}
		return loginHint(c.doLogin(ctx, "ssllogin", "sslLogin", args))
	}
	return c.startSession(ctx, login)
}

// Negotiator produces SPNEGO tokens for GSSAPI login, e.g. from a Kerberos
// keytab. host is the hub's host name (service principal HTTP/host).
type Negotiator interface {
	Token(ctx context.Context, host string) ([]byte, error)
}

// GSSAPILogin logs in with Kerberos: sslLogin on <server>/ssllogin carrying
// an "Authorization: Negotiate" token from n.
func (c *Client) GSSAPILogin(ctx context.Context, n Negotiator) error {
	login := func(ctx context.Context, renew bool) error {
		tok, err := n.Token(ctx, c.base.Hostname())
		if err != nil {
			return fmt.Errorf("koji: GSSAPI token: %w", err)
		}
		var args []any
		if renew {
			args = []any{Kwargs{"renew": true}}
		}
		return loginHint(c.doLoginHeader(ctx, "ssllogin", "sslLogin", args, "Negotiate "+base64.StdEncoding.EncodeToString(tok)))
	}
	return c.startSession(ctx, login)
}

// loginHint adds what to check to the errors of an ssllogin that can never
// succeed as configured; such errors are not retried.
func loginHint(err error) error {
	if err == nil {
		return nil
	}
	var te *TransportError
	switch {
	case errors.As(err, &te) && te.StatusCode == http.StatusForbidden && strings.Contains(te.Err.Error(), "Post-Handshake"):
		return fmt.Errorf("%w (the hub asks for the certificate after the handshake, which Go can only answer by TLS 1.2 renegotiation: do not allow TLS 1.3)", err)
	case errors.As(err, &te) && (te.StatusCode == http.StatusForbidden || te.StatusCode == http.StatusUnauthorized):
		return fmt.Errorf("%w (the hub refused the login: check that the client certificate or Kerberos principal is accepted by the hub's /kojihub/ssllogin and maps to an existing Koji user)", err)
	case isTLSAlert(err):
		return fmt.Errorf("%w (the hub refused the TLS handshake: check that the client certificate is issued by a CA the hub trusts and is valid)", err)
	}
	return err
}

func (c *Client) startSession(ctx context.Context, login func(ctx context.Context, renew bool) error) error {
	if c.LoggedIn() {
		return fmt.Errorf("koji: already logged in")
	}
	if err := login(ctx, false); err != nil {
		return err
	}
	c.mu.Lock()
	c.relog = func(ctx context.Context) error { return login(ctx, true) }
	c.mu.Unlock()
	return nil
}

func (c *Client) doLogin(ctx context.Context, subpath, method string, args []any) error {
	return c.doLoginHeader(ctx, subpath, method, args, "")
}

// doLoginHeader runs a login call. When renewing, the old session headers
// are sent; the hub then keeps the session id and issues a new key.
func (c *Client) doLoginHeader(ctx context.Context, subpath, method string, args []any, authz string) error {
	auth := c.sessionAuth()
	if authz != "" {
		auth.hdr.Set("Authorization", authz)
	}
	var body bytes.Buffer
	if err := EncodeCall(&body, method, args...); err != nil {
		return err
	}
	// Logins are retried on transport errors like Koji's client does.
	v, err := c.send(ctx, subpath, method, body.Bytes(), auth, true)
	if err != nil {
		return err
	}
	var res LoginResult
	if err := Convert(v, &res); err != nil {
		return err
	}
	if res.SessionID == 0 || res.SessionKey == "" {
		return fmt.Errorf("koji: %s returned no session: %v", method, v)
	}
	c.mu.Lock()
	if c.sess != nil && c.sess.id == res.SessionID {
		// Renewed: same session, new key; the callnum keeps increasing.
		c.sess.key = res.SessionKey
	} else {
		c.sess = &session{id: res.SessionID, key: res.SessionKey, headerAuth: res.HeaderAuth}
	}
	c.mu.Unlock()
	return nil
}

// Logout closes the session. It is not retried, and the client forgets the
// session even if the call fails.
func (c *Client) Logout(ctx context.Context) error {
	if !c.LoggedIn() {
		return nil
	}
	_, err := c.call(ctx, "", "logout", nil, false)
	c.mu.Lock()
	c.sess, c.relog = nil, nil
	c.mu.Unlock()
	return err
}

// ExclusiveSession makes the session exclusive, as build hosts must; force
// closes another exclusive session of the same user.
func (c *Client) ExclusiveSession(ctx context.Context, force bool) error {
	var args []any
	if force {
		args = []any{Kwargs{"force": true}}
	}
	_, err := c.Call(ctx, "exclusiveSession", args...)
	return err
}

// SetSession makes the client use an existing session (e.g. one returned by
// subsession), with callnum starting at 0, sent in headers. It cannot renew
// it on expiry.
func (c *Client) SetSession(id int64, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess = &session{id: id, key: key, headerAuth: true}
	c.relog = nil
}

// Subsession creates a subsession of the client's session and returns a
// client using it (sharing the HTTP transport), with its own callnum
// sequence. A subsession of an exclusive session is exclusive too.
func (c *Client) Subsession(ctx context.Context) (*Client, error) {
	var res LoginResult
	if err := c.CallInto(ctx, &res, "subsession"); err != nil {
		return nil, err
	}
	sub := &Client{base: c.base, http: c.http, log: c.log, retry: c.retry, chunk: c.chunk, para: c.para,
		verify: c.verify, sleepF: c.sleepF}
	sub.SetSession(res.SessionID, res.SessionKey)
	return sub, nil
}

// LogoutChild closes a subsession of this client's session.
func (c *Client) LogoutChild(ctx context.Context, sessionID int64) error {
	return c.voidCall(ctx, "logoutChild", sessionID)
}
