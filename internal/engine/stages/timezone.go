package stages

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Timezone sets the image's time zone (/etc/localtime, /etc/timezone).
type Timezone struct {
	Zone string `json:"zone"`
	// NTPServers, if set, are written to systemd-timesyncd's configuration
	// (/etc/systemd/timesyncd.conf.d/kib.conf), which must be installed.
	NTPServers []string `json:"ntp_servers,omitempty"`
}

func init() { register[Timezone]("timezone") }

var ntpServerRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]{2,45})$`)

var zoneRE = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)

// Validate checks the options.
func (t *Timezone) Validate() error {
	if !zoneRE.MatchString(t.Zone) {
		return fmt.Errorf("zone: %q is not a time zone name such as Europe/Prague", t.Zone)
	}
	for i, s := range t.NTPServers {
		if !ntpServerRE.MatchString(s) {
			return fmt.Errorf("ntp_servers[%d]: %q is not a host name or IP address", i, s)
		}
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
