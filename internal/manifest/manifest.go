// Package manifest defines kib's pinned, executable image description: its
// types, canonical JSON encoding, validation and hashing, and the building of
// a manifest from a request and a depsolve result.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/kib-project/kib/internal/stageopt"
)

// FormatVersion is the version of the manifest format this kib writes and
// reads.
const FormatVersion = 1

// Manifest is the pinned description of one image: every input named by its
// checksum, every step listed.
type Manifest struct {
	Version int `json:"version"`
	// Generator is the program (and version) that wrote the manifest.
	Generator string `json:"generator"`
	Distro    string `json:"distro"`
	// Arch is kib's architecture name (x86_64); DebArch the distro's (amd64).
	Arch      string `json:"arch"`
	DebArch   string `json:"deb_arch"`
	ImageType string `json:"image_type"`
	Seed      int64  `json:"seed"`
	// SourceDateEpoch is the time every timestamp in the image is clamped to.
	SourceDateEpoch int64      `json:"source_date_epoch"`
	Sources         Sources    `json:"sources"`
	Pipelines       []Pipeline `json:"pipelines"`
	Exports         []Export   `json:"exports"`
}

// Sources are the manifest's inputs.
type Sources struct {
	// Repositories are the apt sources the packages were resolved from, as
	// one-line entries (for provenance and the image's sources.list).
	Repositories []string `json:"repositories"`
	// Debs are the packages installed in the image.
	Debs []Deb `json:"debs"`
	// BuildDebs are the packages of the build root, the tools that make the
	// image; a package can be in both lists.
	BuildDebs []Deb `json:"build_debs,omitempty"`
}

// AllDebs returns Debs and BuildDebs, each digest once.
func (s *Sources) AllDebs() []Deb {
	seen := map[string]bool{}
	var out []Deb
	for _, d := range append(append([]Deb(nil), s.Debs...), s.BuildDebs...) {
		if !seen[d.SHA256] {
			seen[d.SHA256] = true
			out = append(out, d)
		}
	}
	return out
}

// Deb is one pinned Debian package.
type Deb struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	URL     string `json:"url"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// Pipeline is a tree or a set of files made by a list of stages.
type Pipeline struct {
	Name string `json:"name"`
	// Kind is "tree" (a root directory) or "file" (files in a directory).
	Kind string `json:"kind"`
	// Build names the earlier tree pipeline whose tools the stages run (the
	// build root, as osbuild's build pipeline); empty means the host's.
	Build  string  `json:"build,omitempty"`
	Stages []Stage `json:"stages"`
}

// Stage is one step: its type and its options.
type Stage struct {
	Type    string          `json:"type"`
	Options json.RawMessage `json:"options"`
}

// Export is a pipeline whose output is handed out.
type Export struct {
	// Name is the pipeline's name (Koji's export_name).
	Name string `json:"name"`
	// Filename is the file in the pipeline's output (export_filename).
	Filename string `json:"filename"`
	// BootMode is none, legacy, uefi or hybrid.
	BootMode string `json:"boot_mode"`
}

// Pipeline kinds.
const (
	KindTree = "tree"
	KindFile = "file"
)

// Canonical returns m as canonical JSON: object keys sorted, no insignificant
// white space, no HTML escaping.
func (m *Manifest) Canonical() ([]byte, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return Canonicalize(raw)
}

// Canonicalize re-encodes a JSON document canonically.
func Canonicalize(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Digest returns the sha256 hex digest of m's canonical encoding: the
// build's name.
func (m *Manifest) Digest() (string, error) {
	c, err := m.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// MaxSize bounds the size of a manifest file.
const MaxSize = 64 << 20

// Parse decodes a manifest, rejecting unknown fields, and validates it.
func Parse(r io.Reader) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("manifest: larger than %d bytes", MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: data after the top-level object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// ValidationError lists every problem found in a manifest, each naming its
// field.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	return "invalid manifest: " + strings.Join(e.Problems, "; ")
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*$`)
	pipeRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate checks m: every field, every stage's options, and the references
// between pipelines, exports and sources.
func (m *Manifest) Validate() error {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if m.Version != FormatVersion {
		bad("version: %d is not supported (this kib reads version %d)", m.Version, FormatVersion)
	}
	if m.Generator == "" {
		bad("generator: required")
	}
	if !nameRE.MatchString(m.Distro) {
		bad("distro: %q is not a distro name", m.Distro)
	}
	if m.Arch == "" {
		bad("arch: required")
	}
	if m.DebArch == "" {
		bad("deb_arch: required")
	}
	if m.ImageType == "" {
		bad("image_type: required")
	}
	if m.SourceDateEpoch < 0 {
		bad("source_date_epoch: %d must not be negative", m.SourceDateEpoch)
	}
	debs := map[string]bool{}
	checkDebs := func(field string, list []Deb) {
		seen := map[string]bool{}
		for i, d := range list {
			f := fmt.Sprintf("sources.%s[%d]", field, i)
			if !nameRE.MatchString(d.Name) {
				bad("%s.name: %q is not a package name", f, d.Name)
			}
			if d.Version == "" {
				bad("%s.version: required", f)
			}
			if d.Arch == "" {
				bad("%s.arch: required", f)
			}
			if !strings.HasPrefix(d.URL, "http://") && !strings.HasPrefix(d.URL, "https://") && !strings.HasPrefix(d.URL, "file:/") {
				bad("%s.url: %q must be an http, https or file URL", f, d.URL)
			}
			if d.Size <= 0 {
				bad("%s.size: %d must be positive", f, d.Size)
			}
			if !sha256RE.MatchString(d.SHA256) {
				bad("%s.sha256: %q is not a lower-case sha256 hex digest", f, d.SHA256)
			} else if seen[d.SHA256] {
				bad("%s.sha256: %s is listed twice", f, d.SHA256)
			}
			seen[d.SHA256] = true
			debs[d.SHA256] = true
		}
	}
	checkDebs("debs", m.Sources.Debs)
	checkDebs("build_debs", m.Sources.BuildDebs)
	if len(m.Pipelines) == 0 {
		bad("pipelines: at least one required")
	}
	kinds := map[string]string{}
	for i, pl := range m.Pipelines {
		f := fmt.Sprintf("pipelines[%d]", i)
		if !pipeRE.MatchString(pl.Name) {
			bad("%s.name: %q must be lower-case letters, digits, '-' or '_'", f, pl.Name)
		}
		if _, dup := kinds[pl.Name]; dup {
			bad("%s.name: %q is used twice", f, pl.Name)
		}
		if pl.Kind != KindTree && pl.Kind != KindFile {
			bad("%s.kind: %q must be %q or %q", f, pl.Kind, KindTree, KindFile)
		}
		if len(pl.Stages) == 0 {
			bad("%s.stages: at least one required", f)
		}
		if pl.Build != "" {
			if kind, ok := kinds[pl.Build]; !ok {
				bad("%s.build: pipeline %q must come earlier in pipelines", f, pl.Build)
			} else if kind != KindTree {
				bad("%s.build: pipeline %q is a %s; a build root must be a tree", f, pl.Build, kind)
			}
		}
		for j, st := range pl.Stages {
			sf := fmt.Sprintf("%s.stages[%d]", f, j)
			s, err := stageopt.New(st.Type, st.Options)
			if err != nil {
				bad("%s (%s): %v", sf, st.Type, err)
				continue
			}
			for _, in := range stageInputs(s) {
				if _, ok := kinds[in]; !ok {
					bad("%s (%s): input pipeline %q must come earlier in pipelines", sf, st.Type, in)
				}
			}
			var used []string
			switch x := s.(type) {
			case *stageopt.Mmdebstrap:
				used = x.Debs
			case *stageopt.DebsUnpack:
				used = x.Debs
			}
			for k, d := range used {
				if !debs[d] {
					bad("%s (%s): debs[%d] %s is not in sources.debs", sf, st.Type, k, d)
				}
			}
		}
		kinds[pl.Name] = pl.Kind
	}
	if len(m.Exports) == 0 {
		bad("exports: at least one required")
	}
	for i, e := range m.Exports {
		f := fmt.Sprintf("exports[%d]", i)
		if kind, ok := kinds[e.Name]; !ok {
			bad("%s.name: %q is not a pipeline", f, e.Name)
		} else if kind != KindFile {
			bad("%s.name: pipeline %q is a %s; only file pipelines can be exported", f, e.Name, kind)
		}
		if e.Filename == "" || strings.ContainsAny(e.Filename, "/\x00") {
			bad("%s.filename: %q must be a plain file name", f, e.Filename)
		}
		switch e.BootMode {
		case "none", "legacy", "uefi", "hybrid":
		default:
			bad("%s.boot_mode: %q is not one of none, legacy, uefi, hybrid", f, e.BootMode)
		}
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// stageInputs returns the pipelines a stage reads.
func stageInputs(s any) []string {
	if in, ok := s.(stageopt.InputReader); ok {
		return in.InputNames()
	}
	return nil
}

// Export returns the export called name, or the only export when name is "".
func (m *Manifest) Export(name string) (Export, error) {
	if name == "" && len(m.Exports) == 1 {
		return m.Exports[0], nil
	}
	var names []string
	for _, e := range m.Exports {
		if e.Name == name {
			return e, nil
		}
		names = append(names, e.Name)
	}
	sort.Strings(names)
	return Export{}, fmt.Errorf("export %q not in the manifest (exports: %s)", name, strings.Join(names, ", "))
}

// Pipeline returns the pipeline called name and its index.
func (m *Manifest) Pipeline(name string) (*Pipeline, int) {
	for i := range m.Pipelines {
		if m.Pipelines[i].Name == name {
			return &m.Pipelines[i], i
		}
	}
	return nil, -1
}
