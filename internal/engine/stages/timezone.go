package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kib-project/kib/internal/stageopt"
)

// Timezone is the timezone stage; its options are stageopt.Timezone.
type Timezone stageopt.Timezone

func init() {
	register("timezone", func(o *stageopt.Timezone) Stage { return (*Timezone)(o) })
}

// Run links /etc/localtime to the zone's file, which must exist in the image.
func (t *Timezone) Run(_ context.Context, env *Env) error {
	target := "/usr/share/zoneinfo/" + t.Zone
	if t.Zone != "UTC" && t.Zone != "Etc/UTC" {
		if _, err := os.Stat(filepath.Join(env.Tree, target)); err != nil {
			return fmt.Errorf("zone %q: %s is not in the image (is the tzdata package installed, and the name right?)", t.Zone, target)
		}
	}
	lt := filepath.Join(env.Tree, "etc/localtime")
	_ = os.Remove(lt)
	if err := os.Symlink(target, lt); err != nil {
		return err
	}
	if err := writeTreeFile(env.Tree, "/etc/timezone", []byte(t.Zone+"\n"), 0o644); err != nil {
		return err
	}
	if len(t.NTPServers) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(env.Tree, "usr/lib/systemd/systemd-timesyncd")); err != nil {
		return fmt.Errorf("ntp_servers: systemd-timesyncd is not in the image (the systemd-timesyncd package is needed)")
	}
	conf := "[Time]\nNTP=" + strings.Join(t.NTPServers, " ") + "\n"
	return writeTreeFile(env.Tree, "/etc/systemd/timesyncd.conf.d/kib.conf", []byte(conf), 0o644)
}
