// Package blueprint reads image customizations from a blueprint file (TOML or
// JSON), with the field names of osbuild's blueprints.
package blueprint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Blueprint is a request's customizations.
type Blueprint struct {
	Name           string          `json:"name,omitempty" toml:"name"`
	Description    string          `json:"description,omitempty" toml:"description"`
	Version        string          `json:"version,omitempty" toml:"version"`
	Packages       []Package       `json:"packages,omitempty" toml:"packages"`
	Customizations *Customizations `json:"customizations,omitempty" toml:"customizations"`
}

// Package is an extra package; Version "" or "*" means any.
type Package struct {
	Name    string `json:"name" toml:"name"`
	Version string `json:"version,omitempty" toml:"version"`
}

// Customizations change the image's file system.
type Customizations struct {
	Hostname *string   `json:"hostname,omitempty" toml:"hostname"`
	User     []User    `json:"user,omitempty" toml:"user"`
	Group    []Group   `json:"group,omitempty" toml:"group"`
	Services *Services `json:"services,omitempty" toml:"services"`
	Timezone *Timezone `json:"timezone,omitempty" toml:"timezone"`
	Locale   *Locale   `json:"locale,omitempty" toml:"locale"`
	Kernel   *Kernel   `json:"kernel,omitempty" toml:"kernel"`
	Files    []File    `json:"files,omitempty" toml:"files"`
	Disk     *Disk     `json:"disk,omitempty" toml:"disk"`
}

// User is an account to create.
type User struct {
	Name        string   `json:"name" toml:"name"`
	Description string   `json:"description,omitempty" toml:"description"`
	Password    string   `json:"password,omitempty" toml:"password"`
	Key         string   `json:"key,omitempty" toml:"key"`
	Keys        []string `json:"keys,omitempty" toml:"keys"`
	Home        string   `json:"home,omitempty" toml:"home"`
	Shell       string   `json:"shell,omitempty" toml:"shell"`
	Groups      []string `json:"groups,omitempty" toml:"groups"`
	UID         *int     `json:"uid,omitempty" toml:"uid"`
	GID         *int     `json:"gid,omitempty" toml:"gid"`
}

// Group is a group to create.
type Group struct {
	Name string `json:"name" toml:"name"`
	GID  *int   `json:"gid,omitempty" toml:"gid"`
}

// Services are systemd units to enable or disable.
type Services struct {
	Enabled  []string `json:"enabled,omitempty" toml:"enabled"`
	Disabled []string `json:"disabled,omitempty" toml:"disabled"`
}

// Timezone is the image's time zone.
type Timezone struct {
	Timezone string `json:"timezone,omitempty" toml:"timezone"`
	// NTPServers are the time servers systemd-timesyncd asks.
	NTPServers []string `json:"ntpservers,omitempty" toml:"ntpservers"`
}

// Locale is the image's language.
type Locale struct {
	Languages []string `json:"languages,omitempty" toml:"languages"`
	Keyboard  string   `json:"keyboard,omitempty" toml:"keyboard"`
}

// Kernel holds kernel command line additions.
type Kernel struct {
	Append string `json:"append,omitempty" toml:"append"`
}

// File is a file to write into the image.
type File struct {
	Path  string `json:"path" toml:"path"`
	Data  string `json:"data,omitempty" toml:"data"`
	Mode  string `json:"mode,omitempty" toml:"mode"`
	User  string `json:"user,omitempty" toml:"user"`
	Group string `json:"group,omitempty" toml:"group"`
}

// Disk is the disk image size.
type Disk struct {
	MinSize string `json:"minsize,omitempty" toml:"minsize"`
}

// ntpRE matches a host name, an IPv4 address or an IPv6 address.
var ntpRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]{2,45})$`)

// MaxFileSize bounds the data of one customization file.
const MaxFileSize = 1 << 20

// Parse reads a blueprint in TOML or JSON (detected from the first
// non-space byte) and validates it. Unknown keys are errors that name the key.
func Parse(r io.Reader) (*Blueprint, error) {
	data, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("blueprint: %w", err)
	}
	var bp Blueprint
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&bp); err != nil {
			return nil, fmt.Errorf("blueprint (JSON): %w", err)
		}
		if dec.More() {
			return nil, errors.New("blueprint (JSON): data after the top-level object")
		}
	} else {
		md, err := toml.Decode(string(data), &bp)
		if err != nil {
			return nil, fmt.Errorf("blueprint (TOML): %w", err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return nil, fmt.Errorf("blueprint (TOML): unknown key %s", strings.Join(keys, ", "))
		}
	}
	if err := bp.Validate(); err != nil {
		return nil, err
	}
	return &bp, nil
}

var (
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	userRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`)
	pkgRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	versionRE  = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~:-]*$`)
	unitRE     = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)
	tzRE       = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)
	langRE     = regexp.MustCompile(`^[A-Za-z]{1,8}(_[A-Za-z]{2,3})?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?$`)
	keymapRE   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	cryptRE    = regexp.MustCompile(`^(\$[0-9a-z]+\$[./0-9A-Za-z$=,]+|!|\*|!\*)$`)
	sshKeyRE   = regexp.MustCompile(`^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$`)
	modeRE     = regexp.MustCompile(`^0?[0-7]{3,4}$`)
)

// Validate checks every field and returns all problems, each naming its field.
func (bp *Blueprint) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("blueprint: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	for i, p := range bp.Packages {
		f := fmt.Sprintf("packages[%d]", i)
		if !pkgRE.MatchString(p.Name) {
			bad(f+".name", "%q is not a Debian package name", p.Name)
		}
		if p.Version != "" && p.Version != "*" && !versionRE.MatchString(p.Version) {
			bad(f+".version", "%q is not a Debian version (or \"*\")", p.Version)
		}
	}
	c := bp.Customizations
	if c == nil {
		return errors.Join(errs...)
	}
	if c.Hostname != nil && (len(*c.Hostname) > 253 || !hostnameRE.MatchString(*c.Hostname)) {
		bad("customizations.hostname", "%q is not a valid host name", *c.Hostname)
	}
	users := map[string]bool{}
	for i, u := range c.User {
		f := fmt.Sprintf("customizations.user[%d]", i)
		if !userRE.MatchString(u.Name) {
			bad(f+".name", "%q is not a valid user name (lower case, digits, '_' or '-', at most 31 characters)", u.Name)
		}
		if users[u.Name] {
			bad(f+".name", "%q is listed twice", u.Name)
		}
		users[u.Name] = true
		if u.Password != "" && !cryptRE.MatchString(u.Password) {
			bad(f+".password", "must be a crypt(3) hash such as $y$... or $6$... (make one with 'openssl passwd -6'); plain text passwords are not stored in manifests")
		}
		for j, k := range u.AllKeys() {
			if !sshKeyRE.MatchString(k) {
				bad(fmt.Sprintf("%s.keys[%d]", f, j), "not an OpenSSH public key line")
			}
		}
		if u.Home != "" && !absClean(u.Home) {
			bad(f+".home", "%q must be an absolute, clean path", u.Home)
		}
		if u.Shell != "" && !absClean(u.Shell) {
			bad(f+".shell", "%q must be an absolute, clean path", u.Shell)
		}
		for j, g := range u.Groups {
			if !userRE.MatchString(g) {
				bad(fmt.Sprintf("%s.groups[%d]", f, j), "%q is not a valid group name", g)
			}
		}
		if u.UID != nil && (*u.UID < 0 || *u.UID > 65533) {
			bad(f+".uid", "%d must be 0..65533", *u.UID)
		}
		if u.GID != nil && (*u.GID < 0 || *u.GID > 65533) {
			bad(f+".gid", "%d must be 0..65533", *u.GID)
		}
	}
	for i, g := range c.Group {
		f := fmt.Sprintf("customizations.group[%d]", i)
		if !userRE.MatchString(g.Name) {
			bad(f+".name", "%q is not a valid group name", g.Name)
		}
		if g.GID != nil && (*g.GID < 0 || *g.GID > 65533) {
			bad(f+".gid", "%d must be 0..65533", *g.GID)
		}
	}
	if s := c.Services; s != nil {
		for i, u := range s.Enabled {
			if !unitRE.MatchString(u) {
				bad(fmt.Sprintf("customizations.services.enabled[%d]", i), "%q is not a systemd unit name", u)
			}
		}
		for i, u := range s.Disabled {
			if !unitRE.MatchString(u) {
				bad(fmt.Sprintf("customizations.services.disabled[%d]", i), "%q is not a systemd unit name", u)
			}
		}
	}
	if t := c.Timezone; t != nil && t.Timezone != "" && !tzRE.MatchString(t.Timezone) {
		bad("customizations.timezone.timezone", "%q is not a time zone name such as Europe/Prague", t.Timezone)
	}
	if t := c.Timezone; t != nil {
		for i, s := range t.NTPServers {
			if !ntpRE.MatchString(s) {
				bad(fmt.Sprintf("customizations.timezone.ntpservers[%d]", i), "%q is not a host name or IP address", s)
			}
		}
	}
	if l := c.Locale; l != nil {
		for i, lang := range l.Languages {
			if !langRE.MatchString(lang) {
				bad(fmt.Sprintf("customizations.locale.languages[%d]", i), "%q is not a locale such as en_US.UTF-8", lang)
			}
		}
		if l.Keyboard != "" && !keymapRE.MatchString(l.Keyboard) {
			bad("customizations.locale.keyboard", "%q is not a keymap name", l.Keyboard)
		}
	}
	if k := c.Kernel; k != nil && strings.ContainsAny(k.Append, "\n\x00") {
		bad("customizations.kernel.append", "must be one line")
	}
	paths := map[string]bool{}
	for i, fl := range c.Files {
		f := fmt.Sprintf("customizations.files[%d]", i)
		switch {
		case !absClean(fl.Path):
			bad(f+".path", "%q must be an absolute, clean path", fl.Path)
		case fl.Path == "/" || under(fl.Path, "/dev", "/proc", "/sys", "/run", "/tmp"):
			bad(f+".path", "%q is not allowed (/, /dev, /proc, /sys, /run and /tmp are not part of the image)", fl.Path)
		case paths[fl.Path]:
			bad(f+".path", "%q is listed twice", fl.Path)
		}
		paths[fl.Path] = true
		if len(fl.Data) > MaxFileSize {
			bad(f+".data", "%d bytes is more than %d", len(fl.Data), MaxFileSize)
		}
		if fl.Mode != "" && !modeRE.MatchString(fl.Mode) {
			bad(f+".mode", "%q must be an octal mode such as 0644", fl.Mode)
		}
		if fl.User != "" && !userRE.MatchString(fl.User) {
			bad(f+".user", "%q is not a valid user name", fl.User)
		}
		if fl.Group != "" && !userRE.MatchString(fl.Group) {
			bad(f+".group", "%q is not a valid group name", fl.Group)
		}
	}
	if d := c.Disk; d != nil && d.MinSize != "" {
		if _, err := ParseSize(d.MinSize); err != nil {
			bad("customizations.disk.minsize", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// AllKeys returns the user's SSH keys from key and keys.
func (u User) AllKeys() []string {
	var out []string
	if u.Key != "" {
		out = append(out, u.Key)
	}
	return append(out, u.Keys...)
}

// FileMode returns the file's mode, 0644 by default.
func (f File) FileMode() uint32 {
	if f.Mode == "" {
		return 0o644
	}
	m, _ := strconv.ParseUint(f.Mode, 8, 32)
	return uint32(m)
}

func absClean(p string) bool {
	return strings.HasPrefix(p, "/") && path.Clean(p) == p && !strings.ContainsAny(p, "\x00\n")
}

func under(p string, dirs ...string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

var sizeRE = regexp.MustCompile(`^\s*([0-9]+)\s*([KMGT]i?B|[KMGT]|B)?\s*$`)

// ParseSize parses a size such as "4 GiB", "512M" or "1073741824" into bytes.
// Suffixes with and without "i" are powers of 1024; "GB" is 1000^3.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size such as 4GiB or 512MiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	mult := map[string]int64{"": 1, "B": 1,
		"K": 1 << 10, "KiB": 1 << 10, "KB": 1000,
		"M": 1 << 20, "MiB": 1 << 20, "MB": 1000 * 1000,
		"G": 1 << 30, "GiB": 1 << 30, "GB": 1000 * 1000 * 1000,
		"T": 1 << 40, "TiB": 1 << 40, "TB": 1000 * 1000 * 1000 * 1000,
	}[m[2]]
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}
