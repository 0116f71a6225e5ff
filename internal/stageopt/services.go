package stageopt

import (
	"fmt"
	"regexp"
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
