package kojitest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/koji"
)

// raw is a test bundle speaking to the hub with plain HTTP, to check the
// wire behaviour independently of the koji client.
type raw struct {
	t   *testing.T
	hub *Hub
}

func newRaw(t *testing.T) *raw {
	h := New(t, Options{})
	h.AddUser("alice", "secret")
	return &raw{t: t, hub: h}
}

func (r *raw) post(query string, hdr map[string]string, ctype string, body []byte) (*http.Response, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.hub.URL+query, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (r *raw) call(hdr map[string]string, method string, args ...any) (any, error) {
	r.t.Helper()
	var buf bytes.Buffer
	if err := koji.EncodeCall(&buf, method, args...); err != nil {
		r.t.Fatal(err)
	}
	resp, b := r.post("", hdr, "text/xml", buf.Bytes())
	if resp.StatusCode != 200 {
		r.t.Fatalf("%s: HTTP %d %s", method, resp.StatusCode, b)
	}
	return koji.DecodeResponse(bytes.NewReader(b))
}

func (r *raw) login() map[string]string {
	v, err := r.call(nil, "login", "alice", "secret")
	if err != nil {
		r.t.Fatal(err)
	}
	m := v.(map[string]any)
	return map[string]string{"Koji-Session-Id": fmt.Sprint(m["session-id"]), "Koji-Session-Key": m["session-key"].(string)}
}

func TestTransportRules(t *testing.T) {
	r := newRaw(t)
	resp, err := http.Get(r.hub.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, _ = r.post("", nil, "text/xml", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("empty body: %d", resp.StatusCode)
	}
	resp, _ = r.post("", nil, "text/xml", bytes.Repeat([]byte("x"), 4194305))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("body over MaxRequestLength: %d", resp.StatusCode)
	}
	if resp.Header.Get("Koji-Version") != Version {
		t.Errorf("Koji-Version %q", resp.Header.Get("Koji-Version"))
	}
	if _, err := r.call(nil, "noSuchMethod"); !errors.Is(err, koji.ErrGeneric) || !strings.Contains(err.Error(), "Invalid method: noSuchMethod") {
		t.Errorf("unknown method: %v", err)
	}
	if _, err := r.call(nil, "getAPIVersion", 1); !errors.Is(err, koji.ErrParameter) {
		t.Errorf("wrong arity: %v", err)
	}
}

func TestSessionRules(t *testing.T) {
	r := newRaw(t)
	s := r.login()
	with := func(n string) map[string]string {
		h := map[string]string{"Koji-Session-Callnum": n}
		for k, v := range s {
			h[k] = v
		}
		return h
	}
	if _, err := r.call(with("0"), "exclusiveSession"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.call(with("0"), "sharedSession"); !errors.Is(err, koji.ErrRetry) {
		t.Errorf("repeated callnum after a commit: %v, want RetryError", err)
	}
	if _, err := r.call(with("0"), "host.updateHost", 0.0, true); errors.Is(err, koji.ErrRetry) {
		t.Errorf("whitelisted host.updateHost must pass the retry check: %v", err)
	}
	if _, err := r.call(with("5"), "sharedSession"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.call(with("3"), "echo"); !errors.Is(err, koji.ErrSequence) {
		t.Errorf("lower callnum: %v, want SequenceError", err)
	}
	// Without a callnum header no sequence check is done.
	if _, err := r.call(s, "echo"); err != nil {
		t.Errorf("no callnum: %v", err)
	}
	// Legacy query-string sessions.
	var buf bytes.Buffer
	_ = koji.EncodeCall(&buf, "getLoggedInUser")
	resp, b := r.post("?session-id="+s["Koji-Session-Id"]+"&session-key="+s["Koji-Session-Key"]+"&callnum=9", nil, "text/xml", buf.Bytes())
	v, err := koji.DecodeResponse(bytes.NewReader(b))
	if err != nil || resp.StatusCode != 200 || v.(map[string]any)["name"] != "alice" {
		t.Errorf("query-string session: %v %v", v, err)
	}
	if _, err := r.call(map[string]string{"Koji-Session-Id": s["Koji-Session-Id"], "Koji-Session-Key": "wrong"}, "echo"); !errors.Is(err, koji.ErrAuth) {
		t.Errorf("bad key: %v", err)
	}
	if _, err := r.call(s, "login", "alice", "secret"); err == nil || !strings.Contains(err.Error(), "Already logged in") {
		t.Errorf("second login on a session: %v", err)
	}
	// An exclusive session locks the user's other sessions.
	if _, err := r.call(with("10"), "exclusiveSession"); err != nil {
		t.Fatal(err)
	}
	other := r.login()
	if _, err := r.call(other, "echo"); !errors.Is(err, koji.ErrAuthLock) {
		t.Errorf("other session of a locked user: %v, want AuthLockError", err)
	}
	if _, err := r.call(other, "exclusiveSession"); !errors.Is(err, koji.ErrAuthLock) {
		t.Errorf("second exclusive session: %v", err)
	}
	if _, err := r.call(other, "exclusiveSession", koji.Kwargs{"force": true}); err != nil {
		t.Errorf("forced exclusive session: %v", err)
	}
	if _, err := r.call(s, "echo"); !errors.Is(err, koji.ErrAuth) {
		t.Errorf("session closed by force: %v", err)
	}
}

func TestRawUploadRules(t *testing.T) {
	r := newRaw(t)
	s := r.login()
	up := func(query string, body string) (any, error) {
		resp, b := r.post(query, s, "application/octet-stream", []byte(body))
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		return koji.DecodeResponse(bytes.NewReader(b))
	}
	if _, err := up("?filename=f.log&filepath=d&offset=0", "abc"); !errors.Is(err, koji.ErrUnknownFault) {
		t.Errorf("without fileverify: %v, want fault 1", err)
	}
	v, err := up("?filename=f.log&filepath=d&fileverify=adler32&offset=0", "abc")
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(map[string]any); m["size"] != int64(3) || m["hexdigest"] != "024d0127" || m["offset"] != int64(0) {
		t.Errorf("answer %v", m)
	}
	if _, err := up("?filename=f.log&filepath=d&fileverify=adler32&offset=0", "abc"); err == nil || !strings.Contains(err.Error(), "upload path exists") {
		t.Errorf("offset 0 on an existing file: %v", err)
	}
	if _, err := up("?filename=f.log&filepath=d&fileverify=adler32&offset=1", "x"); err == nil || !strings.Contains(err.Error(), "Incorrect upload length") {
		t.Errorf("non-overwrite write inside the file: %v", err)
	}
	if _, err := up("?filename=f.log&filepath=d&fileverify=md5&offset=1&overwrite=1", "XY"); err != nil {
		t.Errorf("overwrite truncates at offset: %v", err)
	}
	v, err = up("?filename=f.log&filepath=d&fileverify=sha256&offset=-1", "!")
	if err != nil || v.(map[string]any)["offset"] != int64(3) {
		t.Errorf("append: %v %v", v, err)
	}
	v, err = r.call(s, "checkUpload", "d", "f.log", koji.Kwargs{"verify": "adler32", "tail": 2})
	if err != nil || v.(map[string]any)["size"] != int64(4) || v.(map[string]any)["sumlength"] != int64(2) {
		t.Errorf("checkUpload: %v %v", v, err)
	}
	if v, err := r.call(s, "checkUpload", "d", "nothere"); err != nil || v != nil {
		t.Errorf("checkUpload of a missing file: %v %v", v, err)
	}
	if _, err := up("?filename=.x&filepath=d&fileverify=adler32", "a"); err == nil || !strings.Contains(err.Error(), "Invalid upload filename") {
		t.Errorf("hidden name: %v", err)
	}
	if _, err := up("?filename=x&filepath=d&fileverify=sha1", "a"); err == nil || !strings.Contains(err.Error(), "Unsupported verify type: sha1") {
		t.Errorf("sha1: %v", err)
	}
}

func TestFaultInjection(t *testing.T) {
	r := newRaw(t)
	r.hub.Inject(Injection{Nth: 2, Fault: &koji.Fault{Code: koji.CodeServerOffline, String: "offline"}})
	s := r.login() // request 1
	if _, err := r.call(s, "echo"); !errors.Is(err, koji.ErrServerOffline) {
		t.Errorf("second request: %v, want the injected fault", err)
	}
	if _, err := r.call(s, "echo"); err != nil {
		t.Errorf("third request: %v", err)
	}
	r.hub.Inject(Injection{Method: "echo", Status: http.StatusBadGateway})
	var buf bytes.Buffer
	_ = koji.EncodeCall(&buf, "echo")
	if resp, _ := r.post("", s, "text/xml", buf.Bytes()); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status injection: %d", resp.StatusCode)
	}
	if got := r.hub.Calls(); len(got) != 4 || got[3] != "echo" {
		t.Errorf("calls %v", got)
	}
}
