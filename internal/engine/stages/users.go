package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// Users is the users stage; its options are stageopt.Users.
type Users stageopt.Users

func init() {
	register("users", func(o *stageopt.Users) Stage { return (*Users)(o) })
}

// Run creates the groups, then the users, then writes authorized_keys.
func (u *Users) Run(ctx context.Context, env *Env) error {
	chroot := func(args ...string) error {
		_, err := env.exec(ctx, hostcmd.Cmd{Path: "chroot", Args: append([]string{env.Tree}, args...), Env: env.BaseEnv(), Log: env.ToolLog})
		return err
	}
	for _, g := range u.Groups {
		args := []string{"groupadd"}
		if g.GID != nil {
			args = append(args, "-g", strconv.Itoa(*g.GID))
		}
		if err := chroot(append(args, g.Name)...); err != nil {
			return fmt.Errorf("group %q: %w", g.Name, err)
		}
	}
	for _, us := range u.Users {
		for _, g := range us.Groups {
			if _, _, _, err := lookupID(env.Tree, "group", g); err != nil {
				return fmt.Errorf("user %q: group %q does not exist in the image (add it under groups)", us.Name, g)
			}
		}
		_, _, _, exists := lookupID(env.Tree, "passwd", us.Name)
		args := []string{"useradd", "-m"}
		if exists == nil {
			args = []string{"usermod"}
		}
		if us.Description != "" {
			args = append(args, "-c", us.Description)
		}
		if us.Password != "" {
			args = append(args, "-p", us.Password)
		}
		if us.Home != "" {
			args = append(args, "-d", us.Home)
		}
		if us.Shell != "" {
			args = append(args, "-s", us.Shell)
		}
		if len(us.Groups) > 0 {
			if exists == nil {
				args = append(args, "-a")
			}
			args = append(args, "-G", strings.Join(us.Groups, ","))
		}
		if us.UID != nil {
			args = append(args, "-u", strconv.Itoa(*us.UID))
		}
		if us.GID != nil {
			args = append(args, "-g", strconv.Itoa(*us.GID))
		}
		if len(args) > 1 || exists != nil {
			if err := chroot(append(args, us.Name)...); err != nil {
				return fmt.Errorf("user %q: %w", us.Name, err)
			}
		}
		if len(us.Keys) > 0 {
			if err := installKeys(env.Tree, us.Name, us.Keys); err != nil {
				return fmt.Errorf("user %q: %w", us.Name, err)
			}
		}
	}
	return nil
}

func installKeys(tree, name string, keys []string) error {
	uid, gid, home, err := lookupID(tree, "passwd", name)
	if err != nil {
		return err
	}
	dir := filepath.Join(tree, home, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	file := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(file, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	for _, p := range []string{dir, file} {
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o700)
}

// Tools lists the host tools the stage runs.
func (u *Users) Tools() []string { return []string{"chroot"} }
