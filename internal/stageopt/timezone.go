package stageopt

import (
	"fmt"
	"regexp"
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
