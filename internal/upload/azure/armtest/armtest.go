// Package armtest is a test server for the Azure control plane kib's azure
// uploader talks to: Microsoft Entra ID's client-credentials token endpoint
// and the Resource Manager operations on resource groups, storage accounts
// and managed images, as the REST API documents them (JSON bodies, error
// bodies {"error": {"code", "message"}}, long-running operations polled via
// Azure-AsyncOperation and Location headers). Blob data goes to a real blob
// service (Azurite); the server hands out its endpoint and key as the
// storage accounts' primary endpoint and key. It serves HTTPS only, as the
// SDK sends bearer tokens over TLS only.
package armtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Fault makes an operation fail with an ARM error.
type Fault struct {
	Status  int // HTTP status of a synchronous failure; 0 fails the async operation instead
	Code    string
	Message string
}

// Image is a managed image as the server stored it.
type Image struct {
	Name             string
	Location         string
	HyperVGeneration string
	OSType           string
	OSState          string
	BlobURI          string
}

// Server is the test control plane. Set its fields before use; read the
// recorded state under no lock only after the uploads are done.
type Server struct {
	*httptest.Server

	Tenant, ClientID, ClientSecret string
	Subscription                   string
	// Groups maps resource group names to their locations.
	Groups map[string]string
	// BlobEndpoint and AccountKey are what every storage account reports
	// (the blob service's endpoint, e.g. Azurite's http://127.0.0.1:10000/devstoreaccount1/).
	BlobEndpoint, AccountKey string
	// Polls is how many times an operation answers InProgress before it ends.
	Polls int
	// ImageFault, when set, makes image creation fail.
	ImageFault *Fault

	mu       sync.Mutex
	tokens   map[string]bool
	accounts map[string]map[string]*account // group → name → account
	images   map[string]*Image              // group/name → image
	ops      map[string]*operation
	// Requests counts requests by "METHOD kind" (e.g. "PUT image").
	Requests map[string]int
}

type account struct {
	Name, Location string
	Tags           map[string]string
}

type operation struct {
	polls  int
	fault  *Fault
	result func() any // the resource once done
}

// New starts a server for one tenant, client and subscription.
func New() *Server {
	s := &Server{
		Tenant: "00000000-0000-0000-0000-0000000000aa", ClientID: "kib-test-client", ClientSecret: "kib-test-secret",
		Subscription: "00000000-0000-0000-0000-0000000000bb",
		Groups:       map[string]string{},
		Polls:        1,
		tokens:       map[string]bool{},
		accounts:     map[string]map[string]*account{},
		images:       map[string]*Image{},
		ops:          map[string]*operation{},
		Requests:     map[string]int{},
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// AddAccount adds a storage account to a resource group.
func (s *Server) AddAccount(group, name, location string, tags map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accounts[group] == nil {
		s.accounts[group] = map[string]*account{}
	}
	s.accounts[group][name] = &account{Name: name, Location: location, Tags: tags}
}

// Accounts returns the storage account names of a group.
func (s *Server) Accounts(group string) map[string]map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[string]string{}
	for n, a := range s.accounts[group] {
		out[n] = a.Tags
	}
	return out
}

// Image returns a created image, or nil.
func (s *Server) Image(group, name string) *Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	if im := s.images[strings.ToLower(group+"/"+name)]; im != nil {
		c := *im
		return &c
	}
	return nil
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// armError writes ARM's error body.
func armError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// Entra ID: /{tenant}/v2.0/.well-known/openid-configuration and
	// /{tenant}/oauth2/v2.0/token.
	if len(segs) >= 2 && (segs[1] == "v2.0" || segs[1] == "oauth2") {
		s.serveAAD(w, r, segs)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="`+s.URL+`/`+s.Tenant+`", error="invalid_token"`)
		armError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")
		return
	}
	if r.URL.Query().Get("api-version") == "" && !strings.HasPrefix(r.URL.Path, "/operations/") {
		armError(w, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	s.serveARM(w, r, segs)
}

func (s *Server) serveAAD(w http.ResponseWriter, r *http.Request, segs []string) {
	tenant := segs[0]
	rest := strings.Join(segs[1:], "/")
	switch {
	case r.Method == http.MethodGet && rest == "v2.0/.well-known/openid-configuration":
		base := s.URL + "/" + tenant
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        base + "/oauth2/v2.0/token",
			"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
			"issuer":                                base + "/v2.0",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"tenant_region_scope":                   "WW",
		})
	case r.Method == http.MethodPost && rest == "oauth2/v2.0/token":
		_ = r.ParseForm()
		aadErr := func(status int, code, desc string, n int) {
			writeJSON(w, status, map[string]any{"error": code, "error_description": desc, "error_codes": []int{n}, "trace_id": newID(), "correlation_id": newID()})
		}
		switch {
		case tenant != s.Tenant:
			aadErr(http.StatusBadRequest, "invalid_request", fmt.Sprintf("AADSTS90002: Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant), 90002)
		case r.Form.Get("grant_type") != "client_credentials":
			aadErr(http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.", 70003)
		case r.Form.Get("client_id") != s.ClientID:
			aadErr(http.StatusBadRequest, "unauthorized_client", fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", r.Form.Get("client_id")), 700016)
		case r.Form.Get("client_secret") != s.ClientSecret:
			aadErr(http.StatusUnauthorized, "invalid_client", fmt.Sprintf("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", s.ClientID), 7000215)
		default:
			tok := newID()
			s.mu.Lock()
			s.tokens[tok] = true
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
		}
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	return ok && s.tokens[tok]
}

func (s *Server) count(key string) {
	s.mu.Lock()
	s.Requests[key]++
	s.mu.Unlock()
}

func (s *Server) serveARM(w http.ResponseWriter, r *http.Request, segs []string) {
	if segs[0] == "operations" && len(segs) == 2 {
		s.serveOperation(w, r, segs[1])
		return
	}
	low := make([]string, len(segs))
	for i, p := range segs {
		low[i] = strings.ToLower(p)
	}
	if len(low) < 4 || low[0] != "subscriptions" || low[2] != "resourcegroups" {
		armError(w, http.StatusNotFound, "InvalidResourceType", "The resource type could not be found in the namespace.")
		return
	}
	if segs[1] != s.Subscription {
		armError(w, http.StatusNotFound, "SubscriptionNotFound", fmt.Sprintf("The subscription '%s' could not be found.", segs[1]))
		return
	}
	group := segs[3]
	location, ok := s.Groups[group]
	if !ok {
		armError(w, http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", group))
		return
	}
	rest := low[4:]
	switch {
	case len(rest) == 0 && r.Method == http.MethodGet:
		s.count("GET resourcegroup")
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "/subscriptions/" + s.Subscription + "/resourceGroups/" + group, "name": group, "location": location,
			"type": "Microsoft.Resources/resourceGroups", "properties": map[string]string{"provisioningState": "Succeeded"},
		})
	case len(rest) == 3 && rest[0] == "providers" && rest[1] == "microsoft.storage" && rest[2] == "storageaccounts" && r.Method == http.MethodGet:
		s.count("GET storageaccounts")
		s.mu.Lock()
		var list []any
		for _, a := range s.accounts[group] {
			list = append(list, s.accountJSON(group, a))
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"value": list})
	case len(rest) == 4 && rest[1] == "microsoft.storage" && rest[2] == "storageaccounts" && r.Method == http.MethodPut:
		s.count("PUT storageaccount")
		s.createAccount(w, r, group, segs[7])
	case len(rest) == 4 && rest[1] == "microsoft.storage" && rest[2] == "storageaccounts" && r.Method == http.MethodGet:
		s.mu.Lock()
		a := s.accounts[group][segs[7]]
		s.mu.Unlock()
		if a == nil {
			armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource 'Microsoft.Storage/storageAccounts/%s' under resource group '%s' was not found.", segs[7], group))
			return
		}
		writeJSON(w, http.StatusOK, s.accountJSON(group, a))
	case len(rest) == 5 && rest[1] == "microsoft.storage" && rest[2] == "storageaccounts" && rest[4] == "listkeys" && r.Method == http.MethodPost:
		s.count("POST listkeys")
		s.mu.Lock()
		a := s.accounts[group][segs[7]]
		s.mu.Unlock()
		if a == nil {
			armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource 'Microsoft.Storage/storageAccounts/%s' under resource group '%s' was not found.", segs[7], group))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"keys": []any{
			map[string]string{"keyName": "key1", "value": s.AccountKey, "permissions": "FULL"},
		}})
	case len(rest) == 4 && rest[1] == "microsoft.compute" && rest[2] == "images" && r.Method == http.MethodPut:
		s.count("PUT image")
		s.createImage(w, r, group, segs[7])
	case len(rest) == 4 && rest[1] == "microsoft.compute" && rest[2] == "images" && r.Method == http.MethodGet:
		s.count("GET image")
		im := s.Image(group, segs[7])
		if im == nil {
			armError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("The Resource 'Microsoft.Compute/images/%s' under resource group '%s' was not found.", segs[7], group))
			return
		}
		writeJSON(w, http.StatusOK, s.imageJSON(group, im, "Succeeded"))
	default:
		armError(w, http.StatusNotFound, "InvalidResourceType", fmt.Sprintf("The resource type '%s' could not be found.", strings.Join(rest, "/")))
	}
}

func (s *Server) accountJSON(group string, a *account) map[string]any {
	return map[string]any{
		"id":   "/subscriptions/" + s.Subscription + "/resourceGroups/" + group + "/providers/Microsoft.Storage/storageAccounts/" + a.Name,
		"name": a.Name, "location": a.Location, "tags": a.Tags, "kind": "StorageV2",
		"type": "Microsoft.Storage/storageAccounts", "sku": map[string]string{"name": "Standard_LRS", "tier": "Standard"},
		"properties": map[string]any{
			"provisioningState": "Succeeded",
			"primaryEndpoints":  map[string]string{"blob": s.BlobEndpoint},
		},
	}
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request, group, name string) {
	var body struct {
		Kind     string            `json:"kind"`
		Location string            `json:"location"`
		Tags     map[string]string `json:"tags"`
		SKU      struct {
			Name string `json:"name"`
		} `json:"sku"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		armError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "+err.Error())
		return
	}
	if len(name) < 3 || len(name) > 24 || strings.ToLower(name) != name {
		armError(w, http.StatusBadRequest, "AccountNameInvalid", fmt.Sprintf("%s is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only.", name))
		return
	}
	if body.Location == "" || body.Kind == "" || body.SKU.Name == "" {
		armError(w, http.StatusBadRequest, "InvalidRequestContent", "location, kind and sku.name are required.")
		return
	}
	a := &account{Name: name, Location: body.Location, Tags: body.Tags}
	id := newID()
	s.mu.Lock()
	s.ops[id] = &operation{polls: s.Polls, result: func() any {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.accounts[group] == nil {
			s.accounts[group] = map[string]*account{}
		}
		s.accounts[group][name] = a
		return s.accountJSON(group, a)
	}}
	s.mu.Unlock()
	// Storage account creation answers 202 with a Location to poll.
	w.Header().Set("Location", s.URL+"/operations/"+id+"?kind=location")
	w.Header().Set("Retry-After", "0")
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) imageJSON(group string, im *Image, state string) map[string]any {
	return map[string]any{
		"id":   "/subscriptions/" + s.Subscription + "/resourceGroups/" + group + "/providers/Microsoft.Compute/images/" + im.Name,
		"name": im.Name, "location": im.Location, "type": "Microsoft.Compute/images",
		"properties": map[string]any{
			"hyperVGeneration":  im.HyperVGeneration,
			"provisioningState": state,
			"storageProfile": map[string]any{"osDisk": map[string]any{
				"osType": im.OSType, "osState": im.OSState, "blobUri": im.BlobURI, "caching": "ReadWrite", "storageAccountType": "Standard_LRS",
			}},
		},
	}
}

func (s *Server) createImage(w http.ResponseWriter, r *http.Request, group, name string) {
	var body struct {
		Location   string `json:"location"`
		Properties struct {
			HyperVGeneration string `json:"hyperVGeneration"`
			StorageProfile   struct {
				OSDisk *struct {
					OSType  string `json:"osType"`
					OSState string `json:"osState"`
					BlobURI string `json:"blobUri"`
				} `json:"osDisk"`
			} `json:"storageProfile"`
		} `json:"properties"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		armError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "+err.Error())
		return
	}
	p := body.Properties
	osd := p.StorageProfile.OSDisk
	switch {
	case body.Location == "":
		armError(w, http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
		return
	case osd == nil:
		armError(w, http.StatusBadRequest, "InvalidParameter", "Required parameter 'osDisk' is missing (null).")
		return
	case osd.OSType != "Linux" && osd.OSType != "Windows":
		armError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The value '%s' of parameter 'osDisk.osType' is not allowed.", osd.OSType))
		return
	case osd.OSState != "Generalized" && osd.OSState != "Specialized":
		armError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The value '%s' of parameter 'osDisk.osState' is not allowed.", osd.OSState))
		return
	case p.HyperVGeneration != "" && p.HyperVGeneration != "V1" && p.HyperVGeneration != "V2":
		armError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The value '%s' of parameter 'hyperVGeneration' is not allowed.", p.HyperVGeneration))
		return
	case !strings.HasSuffix(strings.ToLower(osd.BlobURI), ".vhd"):
		armError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The source blob %s is not a .vhd file.", osd.BlobURI))
		return
	}
	if f := s.ImageFault; f != nil && f.Status != 0 {
		armError(w, f.Status, f.Code, f.Message)
		return
	}
	gen := p.HyperVGeneration
	if gen == "" {
		gen = "V1"
	}
	im := &Image{Name: name, Location: body.Location, HyperVGeneration: gen, OSType: osd.OSType, OSState: osd.OSState, BlobURI: osd.BlobURI}
	id := newID()
	s.mu.Lock()
	s.ops[id] = &operation{polls: s.Polls, fault: s.ImageFault, result: func() any {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.images[strings.ToLower(group+"/"+name)] = im
		return nil
	}}
	s.mu.Unlock()
	// Compute answers 201 with the resource (Creating) and an
	// Azure-AsyncOperation URL to poll.
	w.Header().Set("Azure-AsyncOperation", s.URL+"/operations/"+id+"?kind=async&api-version=2024-07-01")
	w.Header().Set("Retry-After", "0")
	writeJSON(w, http.StatusCreated, s.imageJSON(group, im, "Creating"))
}

func (s *Server) serveOperation(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method != http.MethodGet {
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed.")
		return
	}
	s.count("GET operation")
	s.mu.Lock()
	op := s.ops[id]
	if op == nil {
		s.mu.Unlock()
		armError(w, http.StatusNotFound, "OperationNotFound", "The operation '"+id+"' was not found.")
		return
	}
	pending := op.polls > 0
	op.polls--
	s.mu.Unlock()
	async := r.URL.Query().Get("kind") == "async"
	if pending {
		if async {
			writeJSON(w, http.StatusOK, map[string]string{"name": id, "status": "InProgress"})
		} else {
			w.Header().Set("Location", s.URL+"/operations/"+id+"?kind=location")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusAccepted)
		}
		return
	}
	if op.fault != nil {
		if async {
			writeJSON(w, http.StatusOK, map[string]any{"name": id, "status": "Failed", "error": map[string]string{"code": op.fault.Code, "message": op.fault.Message}})
		} else {
			armError(w, http.StatusBadRequest, op.fault.Code, op.fault.Message)
		}
		return
	}
	res := op.result()
	if async {
		writeJSON(w, http.StatusOK, map[string]string{"name": id, "status": "Succeeded"})
		return
	}
	writeJSON(w, http.StatusOK, res)
}
