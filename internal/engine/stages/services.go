package stages

import (
	"context"
	"fmt"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

// Services is the services stage; its options are stageopt.Services.
type Services stageopt.Services

func init() {
	register("services", func(o *stageopt.Services) Stage { return (*Services)(o) })
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
