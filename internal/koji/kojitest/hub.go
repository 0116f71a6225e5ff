// Package kojitest is an in-process Koji hub for tests. It speaks Koji's
// wire protocol (XML-RPC with Koji-Session-* headers, raw octet-stream
// uploads) and enforces the rules of a real Koji 1.35 hub for what kib uses:
// sessions and callnum, permissions, uploads, Content Generator imports,
// builds, tasks and build hosts. Imported files are kept on disk in Koji's
// layout under Hub.Dir. Faults can be injected per request.
package kojitest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kib-project/kib/internal/koji"
)

// Version is the Koji version the hub claims in its Koji-Version header.
const Version = "1.35.3"

// User is a Koji user or host account.
type User struct {
	ID        int
	Name      string
	Password  string
	Host      bool
	Perms     map[string]bool
	Principal string
}

type session struct {
	id        int64
	key       string
	user      *User
	callnum   *int64
	expired   bool
	closed    bool
	exclusive bool
	master    int64
	authtype  int
	start     time.Time
}

// Injection describes a fault the hub injects into one request.
type Injection struct {
	// Nth is the 1-based number of the request (counted over all requests
	// the hub receives, XML-RPC and uploads) to act on; 0 means the first
	// request matching Method.
	Nth int
	// Method limits the injection to calls of this XML-RPC method, or to
	// raw uploads with "rawUpload".
	Method string
	// DropAfter closes the connection without an answer after this many
	// bytes of the request body were read (and, for uploads, written).
	// Negative values disable it; use DropAfter 0 with Drop to drop at once.
	DropAfter int
	// Drop enables DropAfter.
	Drop bool
	// DropResponse processes the request normally but closes the connection
	// instead of answering.
	DropResponse bool
	// Status answers with this HTTP status instead of processing.
	Status int
	// Fault answers with this fault instead of processing.
	Fault *koji.Fault
	// Delay holds the answer back this long (or until the client gives up).
	Delay time.Duration
}

// Hub is the in-process hub. Its fields must not be changed while it serves.
type Hub struct {
	// URL is the hub endpoint (like https://koji.example.com/kojihub).
	URL string
	// Dir is KojiDir: work/, packages/ and scratch/ are under it.
	Dir string
	// Server is the running test server.
	Server *httptest.Server

	mu          sync.Mutex
	t           testing.TB
	users       map[int]*User
	userByName  map[string]*User
	sessions    map[int64]*session
	nextSession int64
	requests    int
	injections  []Injection
	calls       []string
	expireAfter time.Duration
	legacy      bool
	proxyCert   bool
	now         func() time.Time
	negotiate   func(token []byte) (string, bool)
	fileLocks   map[string]bool

	cgs        map[string]map[int]bool
	cgIDs      map[string]int
	builds     map[int]*build
	buildByNVR map[string]int
	archives   []*archive
	buildroots []map[string]any
	nextID     int

	tags     map[int]*tag
	targets  map[int]*target
	repos    []*repo
	channels map[string]int
	hosts    map[int]*host
	tasks    map[int]*task
	nextTask int
	sched    SchedulerTimeouts
	down     time.Time // requests until then get 503 (Down)
	// imageRPMs are the components (rpmlist entries) of image archives.
	imageRPMs map[int][]map[string]any
}

// Options configure New.
type Options struct {
	// TLS serves https. Client certificates signed by ClientCAs are asked
	// for (optionally) on every connection, as with a vhost-level
	// "SSLVerifyClient optional".
	TLS bool
	// ClientCAs verifies client certificates for sslLogin.
	ClientCAs *x509.CertPool
	// ProxyClientCert takes sslLogin's certificate check from the headers
	// X-Ssl-Client-Verify and X-Ssl-Client-S-Dn-Cn, set by a TLS-terminating
	// httpd in front of the hub (as mod_ssl's SSL_CLIENT_VERIFY and
	// SSL_CLIENT_S_DN_CN reach the real hub). Only for such test setups.
	ProxyClientCert bool
	// LegacySessions behaves like a hub older than Koji 1.30: logins do not
	// announce "header-auth" and Koji-Session-* headers are ignored, so
	// sessions must travel in the query string.
	LegacySessions bool
	// SessionLifetime makes sessions expire (AuthExpired) this long after
	// login or renewal. Zero means never (tests expire them with
	// ExpireSessions).
	SessionLifetime time.Duration
}

// New starts a hub; it is closed when the test ends.
func New(t testing.TB, opts Options) *Hub {
	t.Helper()
	h := &Hub{
		Dir:         t.TempDir(),
		t:           t,
		users:       map[int]*User{},
		userByName:  map[string]*User{},
		sessions:    map[int64]*session{},
		nextSession: 1,
		cgs:         map[string]map[int]bool{},
		cgIDs:       map[string]int{},
		builds:      map[int]*build{},
		buildByNVR:  map[string]int{},
		tags:        map[int]*tag{},
		targets:     map[int]*target{},
		channels:    map[string]int{},
		hosts:       map[int]*host{},
		tasks:       map[int]*task{},
		nextID:      1,
		nextTask:    1,
		imageRPMs:   map[int][]map[string]any{},
		expireAfter: opts.SessionLifetime,
		legacy:      opts.LegacySessions,
		proxyCert:   opts.ProxyClientCert,
		now:         time.Now,
	}
	for i, ch := range []string{"default", "createrepo", "maven", "livecd", "appliance", "vm", "image", "livemedia"} {
		h.channels[ch] = i + 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/kojihub", h.serve)
	mux.HandleFunc("/kojihub/ssllogin", h.serve)
	mux.Handle("/kojifiles/", h.filesHandler())
	if opts.TLS {
		h.Server = httptest.NewUnstartedServer(mux)
		h.Server.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: opts.ClientCAs}
		h.Server.StartTLS()
	} else {
		h.Server = httptest.NewServer(mux)
	}
	h.URL = h.Server.URL + "/kojihub"
	t.Cleanup(h.Server.Close)
	return h
}

// AddUser creates a normal user with a password and permissions.
func (h *Hub) AddUser(name, password string, perms ...string) *User {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addUserLocked(name, password, false, perms...)
}

func (h *Hub) addUserLocked(name, password string, host bool, perms ...string) *User {
	u := &User{ID: len(h.users) + 1, Name: name, Password: password, Host: host, Perms: map[string]bool{}}
	for _, p := range perms {
		u.Perms[p] = true
	}
	h.users[u.ID] = u
	h.userByName[name] = u
	return u
}

// AddContentGenerator creates the content generator cg and grants access to
// the named users (grantCGAccess with create=True).
func (h *Hub) AddContentGenerator(cg string, users ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cgs[cg] == nil {
		h.cgs[cg] = map[int]bool{}
		h.cgIDs[cg] = len(h.cgIDs) + 1
	}
	for _, n := range users {
		h.cgs[cg][h.userByName[n].ID] = true
	}
}

// ExpireSessions marks every open session expired, as SessionRenewalTimeout
// would.
func (h *Hub) ExpireSessions() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.sessions {
		s.expired = true
	}
}

// AcceptNegotiate sets how sslLogin checks an "Authorization: Negotiate"
// token (after the hub checked it is a base64 SPNEGO/GSS-API token); it
// returns the Kerberos principal. Without it, Negotiate logins fail.
func (h *Hub) AcceptNegotiate(f func(token []byte) (principal string, ok bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.negotiate = f
}

// Inject adds a fault injection.
func (h *Hub) Inject(in Injection) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.injections = append(h.injections, in)
}

// Calls returns the methods called so far, in order ("rawUpload" for raw
// uploads).
func (h *Hub) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// takeInjection returns the injection for this request, if any.
func (h *Hub) takeInjection(method string) *Injection {
	for i, in := range h.injections {
		if in.Method != "" && in.Method != method {
			continue
		}
		if in.Nth != 0 && in.Nth != h.requests {
			continue
		}
		h.injections = append(h.injections[:i], h.injections[i+1:]...)
		return &in
	}
	return nil
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Koji-Version", Version)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	upload := r.Header.Get("Content-Type") == "application/octet-stream"
	var (
		method string
		params []any
		body   io.Reader = r.Body
	)
	if !upload {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 4194304+1))
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if len(raw) == 0 {
			http.Error(w, "Invalid request: Empty request", http.StatusBadRequest)
			return
		}
		if len(raw) > 4194304 {
			http.Error(w, "Invalid request: request too long", http.StatusBadRequest)
			return
		}
		method, params, err = koji.DecodeCall(bytes.NewReader(raw))
		if err != nil {
			http.Error(w, "Invalid request: "+err.Error(), http.StatusBadRequest)
			return
		}
		body = bytes.NewReader(raw)
	} else {
		method = "rawUpload"
	}

	h.mu.Lock()
	if h.now().Before(h.down) {
		h.mu.Unlock()
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	h.requests++
	h.calls = append(h.calls, method)
	in := h.takeInjection(method)
	h.mu.Unlock()
	if in != nil {
		if in.Delay > 0 {
			select {
			case <-time.After(in.Delay):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case in.Status != 0:
			http.Error(w, http.StatusText(in.Status), in.Status)
			return
		case in.Fault != nil:
			writeResult(w, nil, in.Fault)
			return
		case in.Drop:
			if upload {
				body = io.LimitReader(r.Body, int64(in.DropAfter))
			} else {
				panic(http.ErrAbortHandler)
			}
		}
	}

	var (
		res any
		err error
	)
	if upload {
		res, err = h.handleUpload(r, body)
		if in != nil && in.Drop {
			panic(http.ErrAbortHandler)
		}
	} else {
		res, err = h.dispatch(r, method, params)
	}
	if in != nil && in.DropResponse {
		panic(http.ErrAbortHandler)
	}
	writeResult(w, res, err)
}

func writeResult(w http.ResponseWriter, res any, err error) {
	w.Header().Set("Content-Type", "text/xml")
	var buf bytes.Buffer
	if err != nil {
		var f *koji.Fault
		if !errors.As(err, &f) {
			f = &koji.Fault{Code: koji.CodeUnknown, String: "<class 'Exception'>: " + err.Error()}
		}
		_ = koji.EncodeFault(&buf, f)
	} else if eerr := koji.EncodeResponse(&buf, res); eerr != nil {
		buf.Reset()
		_ = koji.EncodeFault(&buf, &koji.Fault{Code: koji.CodeUnknown, String: "<class 'TypeError'>: " + eerr.Error()})
	}
	_, _ = w.Write(buf.Bytes())
}

// Fault helpers, named after Koji's exception classes.
func generic(format string, a ...any) error {
	return &koji.Fault{Code: koji.CodeGeneric, String: fmt.Sprintf(format, a...)}
}

func authError(format string, a ...any) error {
	return &koji.Fault{Code: koji.CodeAuth, String: fmt.Sprintf(format, a...)}
}

func notAllowed(format string, a ...any) error {
	return &koji.Fault{Code: koji.CodeActionNotAllowed, String: fmt.Sprintf(format, a...)}
}

func paramError(format string, a ...any) error {
	return &koji.Fault{Code: koji.CodeParameter, String: fmt.Sprintf(format, a...)}
}

func pyError(class, format string, a ...any) error {
	return &koji.Fault{Code: koji.CodeUnknown, String: fmt.Sprintf("<class '%s'>: ", class) + fmt.Sprintf(format, a...)}
}

// lookupSession identifies the session of a request from the
// Koji-Session-* headers or the legacy query string, and applies Koji's
// checks (auth.py Session.__init__). It returns nil for anonymous requests.
// Callers hold h.mu.
func (h *Hub) lookupSession(r *http.Request, method string) (*session, *int64, error) {
	sid, skey := r.Header.Get("Koji-Session-Id"), r.Header.Get("Koji-Session-Key")
	cn := r.Header.Get("Koji-Session-Callnum")
	if cn == "" {
		cn = r.Header.Get("Koji-Callnum")
	}
	if h.legacy {
		sid, skey, cn = "", "", ""
	}
	if sid == "" {
		// Without headers the session is in the query string (legacy, and
		// how raw uploads look to the hub, their query being non-empty).
		q := r.URL.Query()
		if len(q) == 0 {
			return nil, nil, nil
		}
		if q.Get("session-id") == "" {
			return nil, nil, authError("'session-id' not specified in session args")
		}
		sid, skey, cn = q.Get("session-id"), q.Get("session-key"), q.Get("callnum")
	}
	id, err := strconv.ParseInt(sid, 10, 64)
	if err != nil {
		return nil, nil, authError("invalid session id: %s", sid)
	}
	s := h.sessions[id]
	if s == nil || s.key != skey || s.closed {
		return nil, nil, authError("Invalid session or bad credentials")
	}
	if h.expireAfter > 0 && h.now().Sub(s.start) > h.expireAfter {
		s.expired = true
	}
	if s.expired && method != "login" && method != "sslLogin" {
		return nil, nil, &koji.Fault{Code: koji.CodeAuthExpired, String: fmt.Sprintf("session %q has expired", sid)}
	}
	var callnum *int64
	if cn != "" {
		n, err := strconv.ParseInt(cn, 10, 64)
		if err != nil {
			return nil, nil, authError("invalid callnum: %s", cn)
		}
		if s.callnum != nil {
			switch {
			case *s.callnum > n:
				return nil, nil, &koji.Fault{Code: koji.CodeSequence, String: fmt.Sprintf("%d > %d (session %d)", *s.callnum, n, s.id)}
			case *s.callnum == n && !retryWhitelist[method]:
				return nil, nil, &koji.Fault{Code: koji.CodeRetry, String: fmt.Sprintf("unable to retry call %d (method %s) for session %d", n, method, s.id)}
			}
		}
		callnum = &n
	}
	if !s.exclusive && s.master == 0 && method != "exclusiveSession" && method != "login" && method != "logout" {
		for _, o := range h.sessions {
			if o != s && o.user == s.user && o.exclusive && !o.closed && o.master != s.id {
				return nil, nil, &koji.Fault{Code: koji.CodeAuthLock, String: "User locked by another session"}
			}
		}
	}
	return s, callnum, nil
}

var retryWhitelist = map[string]bool{
	"host.taskWait": true, "host.taskUnwait": true, "host.taskSetWait": true,
	"host.updateHost": true, "host.setBuildRootState": true,
	"repoExpire": true, "repoDelete": true, "repoProblem": true,
}

// call is one call being dispatched.
type call struct {
	h    *Hub
	r    *http.Request
	sess *session
	args []any
	kw   koji.Kwargs
	// commit is set by handlers that change state.
	commit bool
}

func (c *call) user() (*User, error) {
	if c.sess == nil {
		return nil, authError("Not logged-in")
	}
	return c.sess.user, nil
}

func (c *call) hasPerm(perm string) bool {
	return c.sess != nil && (c.sess.user.Perms[perm] || c.sess.user.Perms["admin"])
}

// dispatch runs an XML-RPC call under the hub lock.
func (h *Hub) dispatch(r *http.Request, method string, params []any) (any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, callnum, err := h.lookupSession(r, method)
	if err != nil {
		return nil, err
	}
	expired := s != nil && s.expired
	var res any
	var commit bool
	if method == "multiCall" || method == "system.multicall" {
		res, commit, err = h.multicall(r, s, params)
	} else {
		res, commit, err = h.run(r, s, method, params)
	}
	// An expired session's callnum is not stored (auth.py returns early).
	if err == nil && commit && s != nil && callnum != nil && !s.closed && !expired {
		s.callnum = callnum
	}
	return res, err
}

func (h *Hub) run(r *http.Request, s *session, method string, params []any) (any, bool, error) {
	fn, ok := methods[method]
	if name, isHost := strings.CutPrefix(method, "host."); isHost {
		fn, ok = hostMethods[name]
	}
	if !ok {
		return nil, false, generic("Invalid method: %s", method)
	}
	args, kw := koji.SplitKwargs(params)
	c := &call{h: h, r: r, sess: s, args: args, kw: kw}
	res, err := fn(c)
	return res, c.commit && err == nil, err
}

func (h *Hub) multicall(r *http.Request, s *session, params []any) (any, bool, error) {
	if len(params) != 1 {
		return nil, false, paramError("multiCall takes exactly 1 argument (%d given)", len(params))
	}
	calls, ok := params[0].([]any)
	if !ok {
		return nil, false, pyError("TypeError", "multiCall expects a list")
	}
	out := make([]any, 0, len(calls))
	commit := false
	for _, ci := range calls {
		m, _ := ci.(map[string]any)
		name, _ := m["methodName"].(string)
		ps, _ := m["params"].([]any)
		if name == "multiCall" || name == "system.multicall" {
			out = append(out, map[string]any{"faultCode": int64(koji.CodeGeneric), "faultString": "multicall cannot be nested"})
			continue
		}
		res, c, err := h.run(r, s, name, ps)
		if err != nil {
			var f *koji.Fault
			if !errors.As(err, &f) {
				f = &koji.Fault{Code: 1, String: err.Error()}
			}
			out = append(out, map[string]any{"faultCode": int64(f.Code), "faultString": f.String})
			continue
		}
		commit = commit || c
		out = append(out, []any{res})
	}
	return out, commit, nil
}

// newKey returns a session key like Koji's "<user_id>-<19 random alnum>".
func newKey(uid int) string {
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 19)
	for i := range b {
		b[i] = alnum[rand.IntN(len(alnum))]
	}
	return fmt.Sprintf("%d-%s", uid, b)
}

// login creates a session for u, or renews s when renew is set.
func (c *call) login(u *User, authtype int) (any, error) {
	h := c.h
	renew, _ := c.kw["renew"].(bool)
	if c.sess != nil {
		// Only an expired session counts as not logged in, so only it can
		// be renewed (auth.py Session.__init__ returns early for it).
		if !renew || !c.sess.expired {
			return nil, authError("Already logged in")
		}
		if c.sess.user != u {
			return nil, authError("Renewal of session for different user")
		}
		c.sess.key = newKey(u.ID)
		c.sess.expired = false
		c.sess.start = h.now()
		c.commit = true
		return h.sessionInfo(c.sess), nil
	}
	s := &session{id: h.nextSession, key: newKey(u.ID), user: u, authtype: authtype, start: h.now()}
	h.nextSession++
	h.sessions[s.id] = s
	c.commit = true
	return h.sessionInfo(s), nil
}

func (h *Hub) sessionInfo(s *session) map[string]any {
	m := map[string]any{"session-id": s.id, "session-key": s.key}
	if !h.legacy {
		m["header-auth"] = true
	}
	return m
}

// sslLogin handles certificate and GSSAPI logins.
func (c *call) sslLogin() (any, error) {
	if len(c.args) > 4 {
		return nil, paramError("sslLogin takes at most 4 arguments")
	}
	h := c.h
	var name string
	authtype := 2
	if az := c.r.Header.Get("Authorization"); strings.HasPrefix(az, "Negotiate ") {
		tok, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(az, "Negotiate "))
		if err != nil || !isSPNEGO(tok) {
			return nil, authError("could not verify client: GSSAPI token is not a SPNEGO token")
		}
		if h.negotiate == nil {
			return nil, authError("could not verify client: GSSAPI not configured")
		}
		p, ok := h.negotiate(tok)
		if !ok {
			return nil, authError("could not verify client: GSSAPI token rejected")
		}
		name, _, _ = strings.Cut(p, "@")
		authtype = 3
	} else if h.proxyCert {
		if v := c.r.Header.Get("X-Ssl-Client-Verify"); v != "SUCCESS" {
			return nil, authError("could not verify client: %s", v)
		}
		name = c.r.Header.Get("X-Ssl-Client-S-Dn-Cn")
		if name == "" || name == "(null)" {
			return nil, authError("unable to get user information (CN) from client certificate")
		}
	} else {
		if !strings.HasSuffix(c.r.URL.Path, "/ssllogin") || c.r.TLS == nil || len(c.r.TLS.VerifiedChains) == 0 {
			return nil, authError("could not verify client: NONE")
		}
		name = c.r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	u := h.userByName[name]
	if u == nil {
		u = h.addUserLocked(name, "", false)
	}
	return c.login(u, authtype)
}

// isSPNEGO reports whether tok has the shape of a GSS-API initial context
// token for SPNEGO (RFC 2743 3.1, OID 1.3.6.1.5.5.2) or a bare Kerberos
// AP-REQ wrapped the same way (OID 1.2.840.113554.1.2.2).
func isSPNEGO(tok []byte) bool {
	if len(tok) < 12 || tok[0] != 0x60 {
		return false
	}
	spnego := []byte{0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02}
	krb5 := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02}
	return bytes.Contains(tok[:min(len(tok), 16)], spnego) || bytes.Contains(tok[:min(len(tok), 20)], krb5)
}

// Connector returns a function that makes a client of the hub logged in as
// user with password, as jobs.KojiHub.Connect wants.
func (h *Hub) Connector(user, password string) func(context.Context) (*koji.Client, error) {
	return func(ctx context.Context) (*koji.Client, error) {
		c, err := koji.New(h.URL, koji.Options{})
		if err != nil {
			return nil, err
		}
		return c, c.Login(ctx, user, password)
	}
}
