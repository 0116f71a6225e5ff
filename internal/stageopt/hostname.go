package stageopt

import (
	"fmt"
	"regexp"
)

// Hostname sets the image's host name (/etc/hostname).
type Hostname struct {
	Hostname string `json:"hostname"`
}

func init() { register[Hostname]("hostname") }

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)

// Validate checks the options.
func (h *Hostname) Validate() error {
	if !hostnameRE.MatchString(h.Hostname) {
		return fmt.Errorf("hostname: %q is not a valid host name", h.Hostname)
	}
	return nil
}
