package stages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
)

// Users creates groups and user accounts in the image with the image's own
// shadow tools, and installs SSH keys.
type Users struct {
	Groups []GroupSpec `json:"groups,omitempty"`
	Users  []UserSpec  `json:"users,omitempty"`
}

// GroupSpec is one group.
type GroupSpec struct {
	Name string `json:"name"`
	GID  *int   `json:"gid,omitempty"`
}

// UserSpec is one account. Password is a crypt(3) hash.
type UserSpec struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Password    string   `json:"password,omitempty"`
	Keys        []string `json:"keys,omitempty"`
	Home        string   `json:"home,omitempty"`
	Shell       string   `json:"shell,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	UID         *int     `json:"uid,omitempty"`
	GID         *int     `json:"gid,omitempty"`
}

func init() { register[Users]("users") }

// Validate checks the options.
func (u *Users) Validate() error {
	var errs []error
	for i, us := range u.Users {
		if us.Name == "" || strings.ContainsAny(us.Name, ":/ \n") {
			errs = append(errs, fmt.Errorf("users[%d].name: %q is not a user name", i, us.Name))
		}
		if strings.ContainsAny(us.Password, ": \n") {
			errs = append(errs, fmt.Errorf("users[%d].password: not a crypt(3) hash", i))
		}
		if strings.ContainsAny(us.Description, ":\n") {
			errs = append(errs, fmt.Errorf("users[%d].description: must not contain ':' or newlines", i))
		}
	}
	for i, g := range u.Groups {
		if g.Name == "" || strings.ContainsAny(g.Name, ":/ \n") {
			errs = append(errs, fmt.Errorf("groups[%d].name: %q is not a group name", i, g.Name))
		}
	}
	return errors.Join(errs...)
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
