package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
)

// Locale sets the image's language (/etc/default/locale) and generates it
// when it is not built in (C.UTF-8 always is).
type Locale struct {
	Language string `json:"language"`
	Keyboard string `json:"keyboard,omitempty"`
}

func init() { register[Locale]("locale") }

var langRE = regexp.MustCompile(`^[A-Za-z]{1,8}(_[A-Za-z]{2,3})?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?$`)

// Validate checks the options.
func (l *Locale) Validate() error {
	if !langRE.MatchString(l.Language) {
		return fmt.Errorf("language: %q is not a locale such as en_US.UTF-8", l.Language)
	}
	return nil
}

// Builtin reports whether lang needs no generation.
func (l *Locale) Builtin() bool {
	switch l.Language {
	case "C", "POSIX", "C.UTF-8", "C.utf8":
		return true
	}
	return false
}

// Run writes the locale settings and runs locale-gen in the image if needed.
func (l *Locale) Run(ctx context.Context, env *Env) error {
	if !l.Builtin() {
		if _, err := os.Stat(filepath.Join(env.Tree, "usr/sbin/locale-gen")); err != nil {
			return fmt.Errorf("language %q: locale-gen is not in the image (the locales package is needed)", l.Language)
		}
	}
	if err := writeTreeFile(env.Tree, "/etc/default/locale", []byte("LANG="+l.Language+"\n"), 0o644); err != nil {
		return err
	}
	if l.Keyboard != "" {
		kb := fmt.Sprintf("XKBMODEL=\"pc105\"\nXKBLAYOUT=%q\nXKBVARIANT=\"\"\nXKBOPTIONS=\"\"\nBACKSPACE=\"guess\"\n", l.Keyboard)
		if err := writeTreeFile(env.Tree, "/etc/default/keyboard", []byte(kb), 0o644); err != nil {
			return err
		}
	}
	if l.Builtin() {
		return nil
	}
	charset := "UTF-8"
	if _, cs, ok := strings.Cut(l.Language, "."); ok {
		charset = strings.ToUpper(strings.ReplaceAll(cs, "utf8", "UTF-8"))
	}
	if err := writeTreeFile(env.Tree, "/etc/locale.gen", []byte(l.Language+" "+charset+"\n"), 0o644); err != nil {
		return err
	}
	if _, err := env.exec(ctx, hostcmd.Cmd{Path: "chroot", Args: []string{env.Tree, "locale-gen"}, Env: env.BaseEnv(), Log: env.ToolLog}); err != nil {
		return fmt.Errorf("language %q: %w", l.Language, err)
	}
	return nil
}

// Tools lists the host tools the stage runs.
func (l *Locale) Tools() []string {
	if l.Builtin() {
		return nil
	}
	return []string{"chroot"}
}
