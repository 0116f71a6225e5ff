package stages

import (
	"context"

	"github.com/kib-project/kib/internal/stageopt"
)

// Hostname is the hostname stage; its options are stageopt.Hostname.
type Hostname stageopt.Hostname

func init() {
	register("hostname", func(o *stageopt.Hostname) Stage { return (*Hostname)(o) })
}

// Run writes /etc/hostname.
func (h *Hostname) Run(_ context.Context, env *Env) error {
	return writeTreeFile(env.Tree, "/etc/hostname", []byte(h.Hostname+"\n"), 0o644)
}
