// Package distro loads and validates distro definitions: repositories, package
// sets, image types and defaults, kept as YAML data beside the code.
package distro

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kib-project/kib/distros"
	"github.com/kib-project/kib/internal/blueprint"
)

// Definition is one distro as its YAML file describes it.
type Definition struct {
	Name     string `yaml:"name"`
	OS       string `yaml:"os"`
	Version  string `yaml:"version"`
	Codename string `yaml:"codename"`
	// Architectures maps kib's architecture names (x86_64) to the distro's
	// (amd64).
	Architectures map[string]string `yaml:"architectures"`
	Repositories  []Repository      `yaml:"repositories"`
	// Keyring is the OpenPGP keyring that signs the distro's repositories,
	// as the path the image's apt sources name it by.
	Keyring string `yaml:"keyring"`
	// KeyringFile is the keyring kib ships, relative to the definition's
	// directory (or among kib's embedded ones); kib verifies the repositories with it (KeyringData), not
	// with the host's copy of Keyring. Empty means the host's Keyring file.
	KeyringFile string `yaml:"keyring_file"`
	// KeyringData is KeyringFile's content, read by Load.
	KeyringData []byte               `yaml:"-"`
	Defaults    Defaults             `yaml:"defaults"`
	PackageSets map[string][]string  `yaml:"package_sets"`
	ImageTypes  map[string]ImageType `yaml:"image_types"`
	// BuildRoot, if set, is the pinned tool box every image's tools run in;
	// without it they are the host's.
	BuildRoot *BuildRoot `yaml:"build_root"`
}

// BuildRoot is the package set of the build root.
type BuildRoot struct {
	// Packages are apt names or patterns, resolved with their dependencies.
	Packages []string `yaml:"packages"`
	// Alternatives are links update-alternatives would make, as
	// "/link=/target", since no maintainer script runs in a build root.
	Alternatives []string `yaml:"alternatives"`
}

// Repository is one suite of the distro's archive.
type Repository struct {
	Suite      string   `yaml:"suite"`
	Components []string `yaml:"components"`
	// Fallback is the mirror used when the machine's apt sources name none
	// for this suite.
	Fallback string `yaml:"fallback"`
}

// Defaults are the values a request gets when it does not set them.
type Defaults struct {
	Hostname string `yaml:"hostname"`
	Timezone string `yaml:"timezone"`
	Locale   string `yaml:"locale"`
	Seed     int64  `yaml:"seed"`
}

// ImageType is one kind of image the distro can build.
type ImageType struct {
	// Recipe names the pipeline layout kib builds for this type.
	Recipe      string       `yaml:"recipe"`
	Export      string       `yaml:"export"`
	Filename    string       `yaml:"filename"`
	BootMode    string       `yaml:"boot_mode"`
	PackageSets []string     `yaml:"package_sets"`
	Packages    []string     `yaml:"packages"`
	Compression *Compression `yaml:"compression"`
	Container   *Container   `yaml:"container"`
	// Size is the default disk size, e.g. "4GiB", for disk images.
	Size string `yaml:"size"`
	// Disk says how a disk image is packed; required for recipe disk.
	Disk *Disk `yaml:"disk"`
	// KernelOptions follow root=UUID=... on a disk image's kernel command
	// line.
	KernelOptions string `yaml:"kernel_options"`
}

// Disk is how a disk image is packed.
type Disk struct {
	// Format is raw, qcow2, vpc (fixed VHD), xz (raw, xz-compressed) or gce
	// (raw in a gzipped tar as Google Compute Engine wants it).
	Format string `yaml:"format"`
	// Level is the compression level for xz and gce; 0 means the tool's
	// default.
	Level int `yaml:"level"`
}

// DiskFormats are the formats a disk image can be packed in.
var DiskFormats = []string{"gce", "qcow2", "raw", "vpc", "xz"}

// Compression is how an artifact is compressed.
type Compression struct {
	Format string `yaml:"format"`
	Level  int    `yaml:"level"`
}

// Container is the configuration of a container image.
type Container struct {
	Ref        string   `yaml:"ref"`
	Cmd        []string `yaml:"cmd"`
	Entrypoint []string `yaml:"entrypoint"`
	Env        []string `yaml:"env"`
	WorkingDir string   `yaml:"working_dir"`
}

// Recipes are the pipeline layouts kib knows how to build.
var Recipes = []string{"container", "disk", "tar"}

// BootModes are the boot modes an image type may declare (Koji's values).
var BootModes = []string{"none", "legacy", "uefi", "hybrid"}

// Packages returns the package names and apt patterns of image type t,
// expanded from its package sets, sorted and without duplicates.
func (d *Definition) Packages(t string) []string {
	it := d.ImageTypes[t]
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, s := range it.PackageSets {
		for _, p := range d.PackageSets[s] {
			add(p)
		}
	}
	for _, p := range it.Packages {
		add(p)
	}
	sort.Strings(out)
	return out
}

// DebArch returns the distro's name for kib architecture arch.
func (d *Definition) DebArch(arch string) (string, error) {
	a, ok := d.Architectures[arch]
	if !ok {
		return "", &UnknownError{What: "architecture", Name: arch, Valid: slices.Sorted(maps.Keys(d.Architectures))}
	}
	return a, nil
}

// ImageType returns image type name.
func (d *Definition) ImageType(name string) (ImageType, error) {
	it, ok := d.ImageTypes[name]
	if !ok {
		return ImageType{}, &UnknownError{What: "image type", Name: name, Valid: slices.Sorted(maps.Keys(d.ImageTypes))}
	}
	return it, nil
}

// UnknownError reports a name (distro, architecture, image type) that is not
// one of the valid ones.
type UnknownError struct {
	What  string
	Name  string
	Valid []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown %s %q (valid: %s)", e.What, e.Name, strings.Join(e.Valid, ", "))
}

// Catalog is a set of definitions by name.
type Catalog struct {
	defs map[string]*Definition
}

// Load reads the embedded definitions, then those in dir (if not empty), whose
// files replace embedded ones of the same name.
func Load(dir string) (*Catalog, error) {
	c := &Catalog{defs: map[string]*Definition{}}
	if err := c.addFS(distros.FS, "embedded"); err != nil {
		return nil, err
	}
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("definitions directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("definitions directory %s: not a directory", dir)
		}
		if err := c.addFS(os.DirFS(dir), dir); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Catalog) addFS(fsys fs.FS, where string) error {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			return fmt.Errorf("reading %s: %w", filepath.Join(where, n), err)
		}
		d, err := Parse(data)
		if err != nil {
			return fmt.Errorf("definition %s: %w", filepath.Join(where, n), err)
		}
		if want := strings.TrimSuffix(n, ".yaml"); d.Name != want {
			return fmt.Errorf("definition %s: name %q must match the file name %q", filepath.Join(where, n), d.Name, want)
		}
		if d.KeyringFile != "" {
			// A definitions directory may name its own keyring or one kib
			// ships.
			d.KeyringData, err = fs.ReadFile(fsys, d.KeyringFile)
			if errors.Is(err, fs.ErrNotExist) {
				d.KeyringData, err = fs.ReadFile(distros.FS, d.KeyringFile)
			}
			if err != nil {
				return fmt.Errorf("definition %s: keyring_file %s: not in %s nor among kib's keyrings", filepath.Join(where, n), d.KeyringFile, where)
			}
		}
		c.defs[d.Name] = d
	}
	return nil
}

// Get returns the definition of distro name.
func (c *Catalog) Get(name string) (*Definition, error) {
	d, ok := c.defs[name]
	if !ok {
		return nil, &UnknownError{What: "distro", Name: name, Valid: c.Names()}
	}
	return d, nil
}

// Names lists the distros in the catalog, sorted.
func (c *Catalog) Names() []string { return slices.Sorted(maps.Keys(c.defs)) }

// Parse decodes and validates one definition; unknown keys are errors.
func Parse(data []byte) (*Definition, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d Definition
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)
	suiteRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
)

// Validate checks d for missing and inconsistent fields.
func (d *Definition) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !nameRE.MatchString(d.Name) {
		bad("name: %q must be lower-case letters, digits, '.', '+' or '-'", d.Name)
	}
	if d.OS != "debian" {
		bad("os: %q is not supported (supported: debian)", d.OS)
	}
	if d.Codename == "" {
		bad("codename: required")
	}
	if len(d.Architectures) == 0 {
		bad("architectures: at least one required")
	}
	if len(d.Repositories) == 0 {
		bad("repositories: at least one required")
	}
	for i, r := range d.Repositories {
		if !suiteRE.MatchString(r.Suite) {
			bad("repositories[%d].suite: %q is not a valid suite name", i, r.Suite)
		}
		if len(r.Components) == 0 {
			bad("repositories[%d].components: at least one required", i)
		}
		if r.Fallback == "" {
			bad("repositories[%d].fallback: required", i)
		}
	}
	if d.KeyringFile != "" && !fs.ValidPath(d.KeyringFile) {
		bad("keyring_file: %q must be a clean relative path inside the definitions' directory", d.KeyringFile)
	}
	if d.BuildRoot != nil {
		if len(d.BuildRoot.Packages) == 0 {
			bad("build_root.packages: at least one required")
		}
		for i, a := range d.BuildRoot.Alternatives {
			l, t, ok := strings.Cut(a, "=")
			if !ok || !strings.HasPrefix(l, "/") || !strings.HasPrefix(t, "/") {
				bad("build_root.alternatives[%d]: %q must be /link=/target", i, a)
			}
		}
	}
	if len(d.ImageTypes) == 0 {
		bad("image_types: at least one required")
	}
	for _, name := range slices.Sorted(maps.Keys(d.ImageTypes)) {
		it := d.ImageTypes[name]
		p := "image_types." + name
		if !slices.Contains(Recipes, it.Recipe) {
			bad("%s.recipe: %q is not one of %s", p, it.Recipe, strings.Join(Recipes, ", "))
		}
		if it.Export == "" {
			bad("%s.export: required", p)
		}
		if it.Filename == "" || strings.ContainsAny(it.Filename, "/\x00") {
			bad("%s.filename: %q must be a plain file name", p, it.Filename)
		}
		if !slices.Contains(BootModes, it.BootMode) {
			bad("%s.boot_mode: %q is not one of %s", p, it.BootMode, strings.Join(BootModes, ", "))
		}
		if len(it.PackageSets)+len(it.Packages) == 0 {
			bad("%s: package_sets or packages required", p)
		}
		for _, s := range it.PackageSets {
			if _, ok := d.PackageSets[s]; !ok {
				bad("%s.package_sets: %q is not defined under package_sets", p, s)
			}
		}
		if it.Compression != nil {
			switch it.Compression.Format {
			case "xz":
				if it.Compression.Level < 0 || it.Compression.Level > 9 {
					bad("%s.compression.level: %d must be 0..9 for xz", p, it.Compression.Level)
				}
			default:
				bad("%s.compression.format: %q is not supported (supported: xz)", p, it.Compression.Format)
			}
		}
		if it.Recipe == "tar" && it.Compression == nil {
			bad("%s.compression: required for recipe tar", p)
		}
		if it.Recipe == "container" && it.Container == nil {
			bad("%s.container: required for recipe container", p)
		}
		if it.Recipe == "disk" {
			switch {
			case it.Disk == nil:
				bad("%s.disk: required for recipe disk", p)
			case !slices.Contains(DiskFormats, it.Disk.Format):
				bad("%s.disk.format: %q is not one of %s", p, it.Disk.Format, strings.Join(DiskFormats, ", "))
			case it.Disk.Level < 0 || it.Disk.Level > 9:
				bad("%s.disk.level: %d must be 0..9", p, it.Disk.Level)
			}
			if it.Size == "" {
				bad("%s.size: required for recipe disk", p)
			} else if _, err := blueprint.ParseSize(it.Size); err != nil {
				bad("%s.size: %v", p, err)
			}
			if it.BootMode != "hybrid" {
				bad("%s.boot_mode: %q; disk images are hybrid (BIOS and UEFI)", p, it.BootMode)
			}
		}
	}
	return errors.Join(errs...)
}
