package composer

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/jobs"
	"github.com/kib-project/kib/internal/resolve"
	"github.com/kib-project/kib/internal/upload/azure"
	"github.com/kib-project/kib/internal/upload/gcp"
)

// ComposeRequest is the body of POST /compose.
type ComposeRequest struct {
	Distribution   string          `json:"distribution"`
	ImageRequest   *ImageRequest   `json:"image_request,omitempty"`
	ImageRequests  []ImageRequest  `json:"image_requests,omitempty"`
	Customizations *Customizations `json:"customizations,omitempty"`
	Blueprint      json.RawMessage `json:"blueprint,omitempty"`
	Koji           *Koji           `json:"koji,omitempty"`
}

// Koji is the koji block of a compose request.
type Koji struct {
	Server  string `json:"server"`
	TaskID  int64  `json:"task_id"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Release string `json:"release"`
}

// ImageRequest is one requested image.
type ImageRequest struct {
	Architecture  string          `json:"architecture"`
	ImageType     string          `json:"image_type"`
	Repositories  []Repository    `json:"repositories"`
	OSTree        json.RawMessage `json:"ostree,omitempty"`
	UploadTargets []UploadTarget  `json:"upload_targets,omitempty"`
	UploadOptions json.RawMessage `json:"upload_options,omitempty"`
	Size          uint64          `json:"size,omitempty"`
}

// Repository is a package repository of a request.
type Repository struct {
	RHSM           bool     `json:"rhsm,omitempty"`
	BaseURL        string   `json:"baseurl,omitempty"`
	Mirrorlist     string   `json:"mirrorlist,omitempty"`
	Metalink       string   `json:"metalink,omitempty"`
	GPGKey         string   `json:"gpgkey,omitempty"`
	CheckGPG       bool     `json:"check_gpg,omitempty"`
	CheckRepoGPG   bool     `json:"check_repo_gpg,omitempty"`
	IgnoreSSL      bool     `json:"ignore_ssl,omitempty"`
	ModuleHotfixes bool     `json:"module_hotfixes,omitempty"`
	PackageSets    []string `json:"package_sets,omitempty"`
}

// UploadTarget is one upload target of an image request.
type UploadTarget struct {
	Type          string          `json:"type"`
	UploadOptions json.RawMessage `json:"upload_options"`
}

// Customizations are the customizations kib can honour.
type Customizations struct {
	Packages            []string     `json:"packages,omitempty"`
	Users               []User       `json:"users,omitempty"`
	Hostname            *string      `json:"hostname,omitempty"`
	Timezone            *Timezone    `json:"timezone,omitempty"`
	Locale              *Locale      `json:"locale,omitempty"`
	Services            *Services    `json:"services,omitempty"`
	PayloadRepositories []Repository `json:"payload_repositories,omitempty"`
}

// User is a user to add.
type User struct {
	Name     string   `json:"name"`
	Groups   []string `json:"groups,omitempty"`
	Key      string   `json:"key,omitempty"`
	Password string   `json:"password,omitempty"`
}

// Timezone customization.
type Timezone struct {
	Timezone   string   `json:"timezone,omitempty"`
	NTPServers []string `json:"ntpservers,omitempty"`
}

// Locale customization.
type Locale struct {
	Languages []string `json:"languages,omitempty"`
	Keyboard  string   `json:"keyboard,omitempty"`
}

// Services customization.
type Services struct {
	Enabled  []string `json:"enabled,omitempty"`
	Disabled []string `json:"disabled,omitempty"`
	Masked   []string `json:"masked,omitempty"`
}

// supportedCustomizations are the customization fields kib implements; the
// others are valid in the Cloud API but rejected with a clear error rather
// than silently ignored.
var supportedCustomizations = []string{"packages", "users", "hostname", "timezone", "locale", "services", "payload_repositories"}

// decodeComposeRequest decodes a body that passed schema validation.
func decodeComposeRequest(body []byte) (*ComposeRequest, error) {
	var req ComposeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, &Error{Code: ErrBodyDecodingError, Details: err.Error(), Err: err}
	}
	if req.Customizations != nil {
		var raw struct {
			C map[string]json.RawMessage `json:"customizations"`
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, &Error{Code: ErrBodyDecodingError, Details: err.Error(), Err: err}
		}
		for k := range raw.C {
			if !slices.Contains(supportedCustomizations, k) {
				return nil, apiErr(ErrInvalidCustomization, fmt.Sprintf("customizations.%s: not supported by kib (supported: %s)", k, strings.Join(supportedCustomizations, ", ")))
			}
		}
	}
	return &req, nil
}

// apiImageTypes maps Cloud API image type names to the distro definitions'
// names. A name that is not here is looked up in the definition as is.
var apiImageTypes = map[string]string{
	"guest-image": "qcow2",
	"aws":         "ami",
	"azure":       "vhd",
	"gcp":         "gce",
	"minimal-raw": "raw",
	"vsphere":     "vmdk",
}

// uploadRule says which upload targets an image type may use: its default
// target (for the top-level upload_options) and the allowed upload_targets
// types ("each image type can be uploaded only to its respective target").
type uploadRule struct {
	def     string
	allowed []string
}

// uploadRules is keyed by the definition's image type name; a type not
// listed may only use "local".
var uploadRules = map[string]uploadRule{
	"ami":       {def: "aws", allowed: []string{"aws", "local"}},
	"vhd":       {def: "azure", allowed: []string{"azure", "local"}},
	"gce":       {def: "gcp", allowed: []string{"gcp"}},
	"qcow2":     {def: "aws.s3", allowed: []string{"aws.s3", "local"}},
	"raw":       {def: "aws.s3", allowed: []string{"aws.s3", "local"}},
	"vmdk":      {def: "aws.s3", allowed: []string{"aws.s3", "local"}},
	"tar":       {def: "aws.s3", allowed: []string{"aws.s3", "local"}},
	"container": {def: "container", allowed: []string{"container", "local"}},
}

func rulesFor(imageType string) uploadRule {
	if r, ok := uploadRules[imageType]; ok {
		return r
	}
	return uploadRule{allowed: []string{"local"}}
}

// Upload option shapes, one per target type; unknown fields are rejected.
type awsEC2Options struct {
	Region            string    `json:"region"`
	ShareWithAccounts *[]string `json:"share_with_accounts"`
	SnapshotName      string    `json:"snapshot_name,omitempty"`
}
type awsS3Options struct {
	Region string `json:"region"`
	Public bool   `json:"public,omitempty"`
}
type containerOptions struct {
	Name string `json:"name,omitempty"`
	Tag  string `json:"tag,omitempty"`
}
type emptyOptions struct{}

// checkUploadOptions validates the options of one target type for an
// image of bootMode and returns them normalised. The azure and gcp options
// are checked by their uploaders' own parsers, so what POST accepts is what
// the upload accepts.
func checkUploadOptions(field, typ, bootMode string, raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	bad := func(format string, args ...any) error {
		return apiErr(ErrValidationError, field+": "+fmt.Sprintf(format, args...))
	}
	switch typ {
	case "azure":
		o, err := azure.ParseOptions(raw)
		if err != nil {
			return nil, bad("%s", strings.TrimPrefix(err.Error(), "azure upload options: "))
		}
		if _, err := azure.HyperVGeneration(o.HyperVGeneration, bootMode); err != nil {
			return nil, bad("%s", strings.TrimPrefix(err.Error(), "azure upload options: "))
		}
		return marshalOptions(o)
	case "gcp":
		o, err := gcp.ParseOptions(raw)
		if err != nil {
			return nil, bad("%s", strings.TrimPrefix(err.Error(), "gcp upload options: "))
		}
		return marshalOptions(o)
	}
	var v any
	var required []string
	switch typ {
	case "aws":
		o := &awsEC2Options{}
		v, required = o, []string{"region", "share_with_accounts"}
	case "aws.s3":
		v, required = &awsS3Options{}, []string{"region"}
	case "container":
		v = &containerOptions{}
	case "local", "oci.objectstorage":
		v = &emptyOptions{}
	default:
		return nil, apiErr(ErrInvalidUploadTarget, fmt.Sprintf("%s: upload type %q is not supported", field, typ))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, apiErr(ErrValidationError, fmt.Sprintf("%s.%s: must be %s for upload type %q, not %s", field, te.Field, jsonType(te.Type), typ, te.Value))
		}
		return nil, bad("invalid options for upload type %q: %v", typ, err)
	}
	var present map[string]json.RawMessage
	_ = json.Unmarshal(raw, &present)
	for _, r := range required {
		if _, ok := present[r]; !ok {
			return nil, bad("%s: required for upload type %q", r, typ)
		}
	}
	return marshalOptions(v)
}

// jsonType names the JSON type that decodes into t.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "a number"
}

func marshalOptions(v any) (json.RawMessage, error) {
	out, err := json.Marshal(v)
	if err != nil {
		return nil, internalErr(ErrInternal, err)
	}
	return out, nil
}

// targetDefaults refuses a target the service cannot upload to, and fills
// in composer's defaults: a container's name is the distribution and its
// tag a random UUID (a tag is honoured only with a name).
func targetDefaults(field, typ string, opts json.RawMessage, distribution string, supported func(string) bool) (json.RawMessage, error) {
	if typ == "local" {
		return opts, nil
	}
	if supported == nil || !supported(typ) {
		return nil, apiErr(ErrInvalidUploadTarget, fmt.Sprintf("%s: upload type %q is not configured on this service", field, typ))
	}
	if typ != "container" {
		return opts, nil
	}
	var o containerOptions
	_ = json.Unmarshal(opts, &o)
	if o.Name == "" {
		o.Name, o.Tag = distribution, ""
	}
	if o.Tag == "" {
		o.Tag = uuid.NewString()
	}
	return json.Marshal(o)
}

func newSeed() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63))
}

// toCompose checks a decoded request against the distro catalog and maps it
// to a jobs.Compose.
func (s *Server) toCompose(req *ComposeRequest, tenant string, body []byte) (*jobs.Compose, error) {
	cat := s.cfg.Distros
	if req.Customizations != nil && len(req.Blueprint) > 0 {
		return nil, apiErr(ErrMixedCustomizations, nil)
	}
	if len(req.Blueprint) > 0 {
		return nil, apiErr(ErrInvalidRequest, "blueprint: not supported by kib yet; use customizations")
	}
	var images []ImageRequest
	switch {
	case req.ImageRequest != nil && len(req.ImageRequests) > 0:
		return nil, apiErr(ErrUnsupportedImageCount, "give image_request or image_requests, not both")
	case req.ImageRequest != nil:
		images = []ImageRequest{*req.ImageRequest}
	case len(req.ImageRequests) > 0:
		images = req.ImageRequests
	default:
		return nil, apiErr(ErrUnsupportedImageCount, "image_requests: at least one image is required")
	}
	if req.Koji == nil && len(images) != 1 {
		return nil, apiErr(ErrUnsupportedImageCount, "a compose without koji builds exactly one image")
	}
	def, err := cat.Get(req.Distribution)
	if err != nil {
		return nil, &Error{Code: ErrUnsupportedDistro, Details: err.Error(), Err: err}
	}
	c := &jobs.Compose{Tenant: tenant, Distribution: def.Name, Seed: newSeed(), Request: body}
	if k := req.Koji; k != nil {
		u, err := url.Parse(k.Server)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, apiErr(ErrValidationError, fmt.Sprintf("koji.server: must be an http(s) URL, got %q", k.Server))
		}
		if s.cfg.KojiServer == "" {
			return nil, apiErr(ErrInvalidRequest, "koji: this service has no Koji hub configured")
		}
		if !SameHub(k.Server, s.cfg.KojiServer) {
			return nil, apiErr(ErrInvalidRequest, fmt.Sprintf("koji.server: %q is not the hub this service imports into (%s)", k.Server, s.cfg.KojiServer))
		}
		c.Koji = &jobs.KojiTarget{Server: k.Server, TaskID: k.TaskID, Name: k.Name, Version: k.Version, Release: k.Release}
	}
	var bp json.RawMessage
	var payloadRepos []Repository
	if cz := req.Customizations; cz != nil {
		bp, err = toBlueprint(cz)
		if err != nil {
			return nil, err
		}
		payloadRepos = cz.PayloadRepositories
	}
	seen := map[string]bool{}
	for i, ir := range images {
		field := fmt.Sprintf("image_requests[%d]", i)
		if req.ImageRequest != nil {
			field = "image_request"
		}
		if len(ir.OSTree) > 0 {
			return nil, apiErr(ErrInvalidRequest, field+".ostree: Debian images have no OSTree support")
		}
		if _, err := def.DebArch(ir.Architecture); err != nil {
			return nil, &Error{Code: ErrUnsupportedArch, Details: field + ".architecture: " + err.Error()}
		}
		name := ir.ImageType
		if alias, ok := apiImageTypes[name]; ok {
			if _, err := def.ImageType(alias); err == nil {
				name = alias
			}
		}
		it, err := def.ImageType(name)
		if err != nil {
			return nil, &Error{Code: ErrUnsupportedImageType, Details: field + ".image_type: " + err.Error()}
		}
		key := ir.Architecture + "/" + name
		if c.Koji != nil && seen[key] {
			return nil, apiErr(ErrInvalidRequest, fmt.Sprintf("%s: a second %s image for %s would have the same Koji file name", field, ir.ImageType, ir.Architecture))
		}
		seen[key] = true
		if ir.Size > 0 {
			if it.Recipe != "disk" {
				return nil, apiErr(ErrInvalidRequest, fmt.Sprintf("%s.size: image type %q is not a disk image; it has no size", field, ir.ImageType))
			}
			if ir.Size < minDiskSize || ir.Size > maxDiskSize {
				return nil, apiErr(ErrValidationError, fmt.Sprintf("%s.size: %d bytes is outside %d (512 MiB) to %d (64 TiB)", field, ir.Size, uint64(minDiskSize), uint64(maxDiskSize)))
			}
		}
		img := jobs.ImageRequest{
			Arch: ir.Architecture, ImageType: name, APIImageType: ir.ImageType,
			Filename: it.Filename, Export: it.Export, BootMode: it.BootMode, Size: ir.Size, Blueprint: bp,
		}
		for j, r := range append(append([]Repository{}, ir.Repositories...), payloadRepos...) {
			rf := fmt.Sprintf("%s.repositories[%d]", field, j)
			if j >= len(ir.Repositories) {
				rf = fmt.Sprintf("customizations.payload_repositories[%d]", j-len(ir.Repositories))
			}
			if r.BaseURL == "" {
				if r.Mirrorlist != "" || r.Metalink != "" {
					return nil, apiErr(ErrNoBaseURL, rf+": kib resolves Debian packages from a baseurl; mirrorlist and metalink are not supported")
				}
				return nil, apiErr(ErrNoBaseURL, rf+".baseurl: required")
			}
			if u, err := url.Parse(r.BaseURL); err != nil || u.Scheme == "" || u.Host == "" && u.Scheme != "file" {
				return nil, apiErr(ErrValidationError, rf+".baseurl: must be an absolute URL, got "+r.BaseURL)
			}
			if r.CheckGPG && r.GPGKey == "" {
				return nil, apiErr(ErrNoGPGKey, rf+".gpgkey: required when check_gpg is set")
			}
			if r.RHSM {
				return nil, apiErr(ErrInvalidRequest, rf+".rhsm: not supported for Debian repositories")
			}
			if r.IgnoreSSL {
				return nil, apiErr(ErrInvalidRequest, rf+".ignore_ssl: not supported; kib always verifies TLS and the repository's signature")
			}
			if r.ModuleHotfixes {
				return nil, apiErr(ErrInvalidRequest, rf+".module_hotfixes: DNF modules do not exist in Debian repositories")
			}
			sets := r.PackageSets
			if j >= len(ir.Repositories) {
				// composer: payload repositories serve the image type's
				// payload package sets.
				sets = []string{"blueprint"}
			}
			repo := jobs.Repository{
				BaseURL: strings.ReplaceAll(r.BaseURL, "$arch", ir.Architecture), PackageSets: sets,
				CheckGPG: r.CheckGPG, GPGKey: r.GPGKey, CheckRepoGPG: r.CheckRepoGPG,
			}
			if err := s.resolver.CheckRepository(rf, resolve.Repository{Source: repo.BaseURL, GPGKey: repo.GPGKey, CheckGPG: repo.CheckGPG, PackageSets: repo.PackageSets}); err != nil {
				var re *resolve.Error
				if errors.As(err, &re) {
					return nil, apiErr(ErrInvalidRequest, re.Error())
				}
				return nil, apiErr(ErrInvalidRequest, err.Error())
			}
			img.Repositories = append(img.Repositories, repo)
		}
		rule := rulesFor(name)
		// The order of targets follows composer: upload_targets are
		// prepended one at a time, upload_options' default target comes last.
		for j, t := range ir.UploadTargets {
			tf := fmt.Sprintf("%s.upload_targets[%d]", field, j)
			if !slices.Contains(rule.allowed, t.Type) {
				return nil, apiErr(ErrInvalidUploadTarget, fmt.Sprintf("%s.type: image type %q can be uploaded to %s only, not %q", tf, ir.ImageType, strings.Join(rule.allowed, ", "), t.Type))
			}
			opts, err := checkUploadOptions(tf+".upload_options", t.Type, img.BootMode, t.UploadOptions)
			if err != nil {
				return nil, err
			}
			if opts, err = targetDefaults(tf, t.Type, opts, req.Distribution, s.cfg.UploadTargets); err != nil {
				return nil, err
			}
			img.Targets = append([]jobs.UploadTarget{{Type: t.Type, Options: opts}}, img.Targets...)
		}
		if len(ir.UploadOptions) > 0 {
			if rule.def == "" {
				return nil, apiErr(ErrUnsupportedImageType, fmt.Sprintf("%s.upload_options: image type %q has no default upload target; use upload_targets", field, ir.ImageType))
			}
			opts, err := checkUploadOptions(field+".upload_options", rule.def, img.BootMode, ir.UploadOptions)
			if err != nil {
				return nil, err
			}
			if opts, err = targetDefaults(field+".upload_options", rule.def, opts, req.Distribution, s.cfg.UploadTargets); err != nil {
				return nil, err
			}
			img.Targets = append(img.Targets, jobs.UploadTarget{Type: rule.def, Options: opts})
		}
		c.Images = append(c.Images, img)
	}
	return c, nil
}

// Disk sizes kib builds: the engine's smallest bootable disk, and a bound
// far above any cloud's image size that keeps the arithmetic safe.
const (
	minDiskSize = 512 << 20
	maxDiskSize = 64 << 40
)

// SameHub reports whether two Koji hub URLs name the same hub: scheme and
// host compared without case, a trailing "/" ignored.
func SameHub(a, b string) bool {
	ua, err1 := url.Parse(strings.TrimRight(a, "/"))
	ub, err2 := url.Parse(strings.TrimRight(b, "/"))
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) && ua.Path == ub.Path && ua.RawQuery == ub.RawQuery
}

func toBlueprint(cz *Customizations) (json.RawMessage, error) {
	bp := blueprint.Blueprint{Name: "compose"}
	for _, p := range cz.Packages {
		if p == "" {
			return nil, apiErr(ErrInvalidCustomization, "customizations.packages: empty package name")
		}
		bp.Packages = append(bp.Packages, blueprint.Package{Name: p})
	}
	c := &blueprint.Customizations{Hostname: cz.Hostname}
	for i, u := range cz.Users {
		if u.Name == "" {
			return nil, apiErr(ErrInvalidCustomization, fmt.Sprintf("customizations.users[%d].name: required", i))
		}
		c.User = append(c.User, blueprint.User{Name: u.Name, Groups: u.Groups, Key: u.Key, Password: u.Password})
	}
	if cz.Timezone != nil {
		c.Timezone = &blueprint.Timezone{Timezone: cz.Timezone.Timezone, NTPServers: cz.Timezone.NTPServers}
	}
	if cz.Locale != nil {
		c.Locale = &blueprint.Locale{Languages: cz.Locale.Languages, Keyboard: cz.Locale.Keyboard}
	}
	if cz.Services != nil {
		if len(cz.Services.Masked) > 0 {
			return nil, apiErr(ErrInvalidCustomization, "customizations.services.masked: not supported by kib")
		}
		c.Services = &blueprint.Services{Enabled: cz.Services.Enabled, Disabled: cz.Services.Disabled}
	}
	bp.Customizations = c
	if err := bp.Validate(); err != nil {
		return nil, apiErr(ErrInvalidCustomization, err.Error())
	}
	b, err := json.Marshal(bp)
	if err != nil {
		return nil, internalErr(ErrInternal, err)
	}
	return b, nil
}
