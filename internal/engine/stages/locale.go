package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// Locale is the locale stage; its options are stageopt.Locale.
type Locale stageopt.Locale

func init() {
	register("locale", func(o *stageopt.Locale) Stage { return (*Locale)(o) })
}

// Run writes the locale settings and runs locale-gen in the image if needed.
func (l *Locale) Run(ctx context.Context, env *Env) error {
	if !(*stageopt.Locale)(l).Builtin() {
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
	if (*stageopt.Locale)(l).Builtin() {
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
	if (*stageopt.Locale)(l).Builtin() {
		return nil
	}
	return []string{"chroot"}
}
