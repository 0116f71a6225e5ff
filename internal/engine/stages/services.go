package stages

import (
	"context"
	"fmt"
	"regexp"

	"github.com/kib-project/kib/internal/hostcmd"
)

// Services enables and disables systemd units in the image.
type Services struct {
	Enabled  []string `json:"enabled,omitempty"`
	Disabled []string `json:"disabled,omitempty"`
}

func init() { register[Services]("services") }

var unitRE = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)

// Validate checks the options.
func (s *Services) Validate() error {
	for i, u := range s.Enabled {
		if !unitRE.MatchString(u) {
			return fmt.Errorf("enabled[%d]: %q is not a unit name", i, u)
		}
	}
	for i, u := range s.Disabled {
		if !unitRE.MatchString(u) {
			return fmt.Errorf("disabled[%d]: %q is not a unit name", i, u)
		}
	}
	return nil
}

// Run runs systemctl --root on the tree (offline; nothing starts).
func (s *Services) Run(ctx context.Context, env *Env) error {
	for _, op := range []struct {
		verb  string
		units []string
	}{{"enable", s.Enabled}, {"disable", s.Disabled}} {
		for _, u := range op.units {
			_, err := env.exec(ctx, hostcmd.Cmd{Path: "systemctl", Args: []string{"--root=" + env.Tree, "--no-reload", op.verb, u}, Env: env.BaseEnv(), Log: env.ToolLog})
			if err != nil {
				return fmt.Errorf("%s unit %q (is the package that ships it installed?): %w", op.verb, u, err)
			}
		}
	}
	return nil
}

// Tools lists the host tools the stage runs.
func (s *Services) Tools() []string { return []string{"systemctl"} }
