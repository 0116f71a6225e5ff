// Package computetest is a test server for the Google Cloud control plane
// kib's gcp uploader talks to: the OAuth 2.0 token endpoint of a service
// account key (the JWT bearer grant) and Compute Engine API v1's global
// images (insert, get, getIamPolicy, setIamPolicy) and global operations
// (get, wait), as the REST API documents them: JSON resources, operations
// that run and end DONE with an error or not, and error bodies
// {"error": {"code", "message", "errors", "status"}}. The staging object
// an image is made from is looked up in a real Cloud Storage emulator
// (fake-gcs-server) when StorageURL is set.
package computetest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fault makes an image insert fail: synchronously with an API error when
// Status is set, else in the operation's error.
type Fault struct {
	Status  int
	Code    string // the operation error's code, e.g. QUOTA_EXCEEDED
	Message string
}

// Image is an image as the server stored it.
type Image struct {
	Name             string
	Source           string
	ContainerType    string
	StorageLocations []string
	GuestOSFeatures  []string
	Members          map[string][]string // IAM role → members
	etag             int
}

// Server is the test control plane for one project and service account.
type Server struct {
	*httptest.Server

	Project     string
	ClientEmail string
	// StorageURL is the Cloud Storage JSON API the image sources are read
	// from (e.g. http://127.0.0.1:4443/storage/v1/); empty skips the check.
	StorageURL string
	// Polls is how many operations.wait calls answer RUNNING.
	Polls int
	// InsertFault, when set, makes images.insert fail.
	InsertFault *Fault

	key *rsa.PrivateKey

	mu     sync.Mutex
	tokens map[string]bool
	images map[string]*Image
	ops    map[string]*operation
	// Calls counts requests by method name (e.g. "images.insert").
	Calls map[string]int
}

type operation struct {
	op     map[string]any
	polls  int
	finish func() (errCode, errMsg string, status int)
	done   bool
}

// New starts a server for project.
func New(project string) *Server {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	s := &Server{
		Project: project, ClientEmail: "kib-uploader@" + project + ".iam.gserviceaccount.com",
		Polls: 1, key: key,
		tokens: map[string]bool{}, images: map[string]*Image{}, ops: map[string]*operation{}, Calls: map[string]int{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// KeyJSON returns a service account key file for the server's account. A
// wrong key has the right account but a private key the server does not
// know, as a revoked or mistyped key would.
func (s *Server) KeyJSON(wrong bool) []byte {
	key := s.key
	if wrong {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	b, _ := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     s.Project,
		"private_key_id": "0123456789abcdef",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   s.ClientEmail,
		"client_id":      "123456789",
		"auth_uri":       s.URL + "/o/oauth2/auth",
		"token_uri":      s.URL + "/token",
	}, "", "  ")
	return b
}

// Image returns a created image, or nil.
func (s *Server) Image(name string) *Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	if im := s.images[name]; im != nil {
		c := *im
		return &c
	}
	return nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// numericID is a resource id: Compute Engine's ids are uint64s, sent as
// decimal strings.
func numericID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return strconv.FormatUint(binary.BigEndian.Uint64(b)>>1, 10)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var statusNames = map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

// apiError writes Google's JSON error body.
func apiError(w http.ResponseWriter, status int, reason, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": status, "message": msg, "status": statusNames[status],
		"errors": []any{map[string]string{"message": msg, "domain": "global", "reason": reason}},
	}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.serveToken(w, r)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		apiError(w, http.StatusUnauthorized, "authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/compute/v1/projects/")
	if !ok {
		apiError(w, http.StatusNotFound, "notFound", "The requested URL "+r.URL.Path+" was not found on this server.")
		return
	}
	segs := strings.Split(rest, "/")
	if segs[0] != s.Project {
		apiError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The resource 'projects/%s' was not found", segs[0]))
		return
	}
	if len(segs) < 3 || segs[1] != "global" {
		apiError(w, http.StatusNotFound, "notFound", "The requested URL "+r.URL.Path+" was not found on this server.")
		return
	}
	switch {
	case segs[2] == "images" && len(segs) == 3 && r.Method == http.MethodPost:
		s.count("images.insert")
		s.insertImage(w, r)
	case segs[2] == "images" && len(segs) == 4 && r.Method == http.MethodGet:
		s.count("images.get")
		im := s.Image(segs[3])
		if im == nil {
			s.notFound(w, "images", segs[3])
			return
		}
		writeJSON(w, http.StatusOK, s.imageJSON(im))
	case segs[2] == "images" && len(segs) == 5 && segs[4] == "getIamPolicy" && r.Method == http.MethodGet:
		s.count("images.getIamPolicy")
		im := s.Image(segs[3])
		if im == nil {
			s.notFound(w, "images", segs[3])
			return
		}
		writeJSON(w, http.StatusOK, policyJSON(im))
	case segs[2] == "images" && len(segs) == 5 && segs[4] == "setIamPolicy" && r.Method == http.MethodPost:
		s.count("images.setIamPolicy")
		s.setIamPolicy(w, r, segs[3])
	case segs[2] == "operations" && len(segs) == 4 && r.Method == http.MethodGet:
		s.count("globalOperations.get")
		s.serveOperation(w, segs[3], false)
	case segs[2] == "operations" && len(segs) == 5 && segs[4] == "wait" && r.Method == http.MethodPost:
		s.count("globalOperations.wait")
		s.serveOperation(w, segs[3], true)
	default:
		apiError(w, http.StatusNotFound, "notFound", "The requested URL "+r.URL.Path+" was not found on this server.")
	}
}

func (s *Server) count(method string) {
	s.mu.Lock()
	s.Calls[method]++
	s.mu.Unlock()
}

func (s *Server) notFound(w http.ResponseWriter, kind, name string) {
	apiError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The resource 'projects/%s/global/%s/%s' was not found", s.Project, kind, name))
}

// serveToken answers the JWT bearer grant of a service account key.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	oauthErr := func(code, desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	if r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthErr("unsupported_grant_type", "Invalid grant_type: "+r.Form.Get("grant_type"))
		return
	}
	if _, err := s.verify(r.Form.Get("assertion")); err != nil {
		oauthErr("invalid_grant", "Invalid JWT Signature.")
		return
	}
	tok := "ya29." + newID() + newID()
	s.mu.Lock()
	s.tokens[tok] = true
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
}

// verify checks a JWT signed by the service account's key.
func (s *Server) verify(raw string) (*jwt.Token, error) {
	return jwt.Parse(raw, func(t *jwt.Token) (any, error) { return &s.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(s.ClientEmail), jwt.WithLeeway(time.Minute))
}

// authorized accepts an access token from /token or a self-signed JWT of
// the service account, as Google's APIs do.
func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	known := s.tokens[tok]
	s.mu.Unlock()
	if known {
		return true
	}
	_, err := s.verify(tok)
	return err == nil
}

var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (s *Server) insertImage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name             string   `json:"name"`
		StorageLocations []string `json:"storageLocations"`
		GuestOsFeatures  []struct {
			Type string `json:"type"`
		} `json:"guestOsFeatures"`
		RawDisk *struct {
			Source        string `json:"source"`
			ContainerType string `json:"containerType"`
		} `json:"rawDisk"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "parseError", "Invalid JSON payload received. "+err.Error())
		return
	}
	switch {
	case !nameRE.MatchString(body.Name):
		apiError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", body.Name))
		return
	case body.RawDisk == nil || body.RawDisk.Source == "":
		apiError(w, http.StatusBadRequest, "required", "Required field 'resource.rawDisk.source' not specified")
		return
	case body.RawDisk.ContainerType != "" && body.RawDisk.ContainerType != "TAR":
		apiError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("Invalid value for field 'resource.rawDisk.containerType': '%s'.", body.RawDisk.ContainerType))
		return
	}
	if f := s.InsertFault; f != nil && f.Status != 0 {
		apiError(w, f.Status, strings.ToLower(f.Code), f.Message)
		return
	}
	s.mu.Lock()
	_, exists := s.images[body.Name]
	s.mu.Unlock()
	if exists {
		apiError(w, http.StatusConflict, "alreadyExists", fmt.Sprintf("The resource 'projects/%s/global/images/%s' already exists", s.Project, body.Name))
		return
	}
	im := &Image{Name: body.Name, Source: body.RawDisk.Source, ContainerType: body.RawDisk.ContainerType, StorageLocations: body.StorageLocations, Members: map[string][]string{}}
	for _, f := range body.GuestOsFeatures {
		im.GuestOSFeatures = append(im.GuestOSFeatures, f.Type)
	}
	fault := s.InsertFault
	target := fmt.Sprintf("%s/compute/v1/projects/%s/global/images/%s", s.URL, s.Project, body.Name)
	op := s.newOperation("insert", target, func() (string, string, int) {
		if fault != nil {
			return fault.Code, fault.Message, 400
		}
		if code, msg, status := s.checkSource(im.Source); code != "" {
			return code, msg, status
		}
		s.mu.Lock()
		s.images[im.Name] = im
		s.mu.Unlock()
		return "", "", 0
	})
	writeJSON(w, http.StatusOK, op)
}

// checkSource makes sure the image's source object exists, as Compute
// Engine reads it while the operation runs.
func (s *Server) checkSource(source string) (code, msg string, status int) {
	if s.StorageURL == "" {
		return "", "", 0
	}
	rest, ok := strings.CutPrefix(source, "https://storage.googleapis.com/")
	bucket, object, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return "INVALID_FIELD_VALUE", fmt.Sprintf("Invalid value for field 'resource.rawDisk.source': '%s'. The URL is malformed.", source), 400
	}
	u := strings.TrimSuffix(s.StorageURL, "/") + "/b/" + url.PathEscape(bucket) + "/o/" + url.PathEscape(object)
	resp, err := http.Get(u)
	if err != nil {
		return "INTERNAL_ERROR", "Internal error. " + err.Error(), 500
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "RESOURCE_NOT_FOUND", fmt.Sprintf("The resource '%s' of type 'storage object' was not found.", source), 404
	}
	return "", "", 0
}

func (s *Server) newOperation(kind, target string, finish func() (string, string, int)) map[string]any {
	id := "operation-" + newID()
	op := map[string]any{
		"kind": "compute#operation", "id": numericID(), "name": id, "operationType": kind,
		"targetLink": target, "status": "PENDING", "progress": 0,
		"insertTime": time.Now().Format(time.RFC3339), "user": s.ClientEmail,
		"selfLink": fmt.Sprintf("%s/compute/v1/projects/%s/global/operations/%s", s.URL, s.Project, id),
	}
	s.mu.Lock()
	s.ops[id] = &operation{op: op, polls: s.Polls, finish: finish}
	s.mu.Unlock()
	return op
}

func (s *Server) serveOperation(w http.ResponseWriter, id string, wait bool) {
	s.mu.Lock()
	o := s.ops[id]
	s.mu.Unlock()
	if o == nil {
		s.notFound(w, "operations", id)
		return
	}
	s.mu.Lock()
	if !o.done && o.polls > 0 {
		o.polls--
		o.op["status"] = "RUNNING"
		o.op["progress"] = 50
		c := clone(o.op)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, c)
		return
	}
	first := !o.done
	o.done = true
	s.mu.Unlock()
	if first {
		code, msg, status := o.finish()
		s.mu.Lock()
		o.op["status"] = "DONE"
		o.op["progress"] = 100
		o.op["endTime"] = time.Now().Format(time.RFC3339)
		if code != "" {
			o.op["error"] = map[string]any{"errors": []any{map[string]string{"code": code, "message": msg}}}
			o.op["httpErrorStatusCode"] = status
			o.op["httpErrorMessage"] = strings.ToUpper(http.StatusText(status))
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	c := clone(o.op)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, c)
}

func clone(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (s *Server) imageJSON(im *Image) map[string]any {
	var gf []any
	for _, f := range im.GuestOSFeatures {
		gf = append(gf, map[string]string{"type": f})
	}
	return map[string]any{
		"kind": "compute#image", "id": "1234567890", "name": im.Name, "status": "READY",
		"sourceType": "RAW", "rawDisk": map[string]string{"source": im.Source, "containerType": im.ContainerType},
		"storageLocations": im.StorageLocations, "guestOsFeatures": gf,
		"selfLink": fmt.Sprintf("%s/compute/v1/projects/%s/global/images/%s", s.URL, s.Project, im.Name),
	}
}

func policyJSON(im *Image) map[string]any {
	var bindings []any
	for role, members := range im.Members {
		bindings = append(bindings, map[string]any{"role": role, "members": members})
	}
	return map[string]any{"version": 1, "etag": etag(im.etag), "bindings": bindings}
}

func etag(n int) string { return fmt.Sprintf("BwY%04d=", n) }

func (s *Server) setIamPolicy(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Policy struct {
			Etag     string `json:"etag"`
			Bindings []struct {
				Role    string   `json:"role"`
				Members []string `json:"members"`
			} `json:"bindings"`
		} `json:"policy"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "parseError", "Invalid JSON payload received. "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.images[name]
	if im == nil {
		s.notFound(w, "images", name)
		return
	}
	if body.Policy.Etag != "" && body.Policy.Etag != etag(im.etag) {
		apiError(w, http.StatusPreconditionFailed, "conditionNotMet", "Precondition Failed: the policy's etag does not match the current policy.")
		return
	}
	members := map[string][]string{}
	for _, b := range body.Policy.Bindings {
		for _, m := range b.Members {
			if !strings.Contains(m, ":") {
				apiError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf("Invalid member '%s': members must have a type prefix such as user:.", m))
				return
			}
		}
		members[b.Role] = append(members[b.Role], b.Members...)
	}
	im.Members = members
	im.etag++
	writeJSON(w, http.StatusOK, policyJSON(im))
}
