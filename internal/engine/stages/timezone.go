package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// Timezone sets the image's time zone (/etc/localtime, /etc/timezone).
type Timezone struct {
	Zone string `json:"zone"`
}

func init() { register[Timezone]("timezone") }

var zoneRE = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)

// Validate checks the options.
func (t *Timezone) Validate() error {
	if !zoneRE.MatchString(t.Zone) {
		return fmt.Errorf("zone: %q is not a time zone name such as Europe/Prague", t.Zone)
	}
	return nil
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
	return writeTreeFile(env.Tree, "/etc/timezone", []byte(t.Zone+"\n"), 0o644)
}
