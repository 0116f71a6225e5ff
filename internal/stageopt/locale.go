package stageopt

import (
	"fmt"
	"regexp"
)

// Locale sets the image's language (/etc/default/locale) and generates it
// when it is not built in (C.UTF-8 always is).
type Locale struct {
	Language string `json:"language"`
	Keyboard string `json:"keyboard,omitempty"`
}

func init() { register[Locale]("locale") }

var langRE = regexp.MustCompile(`^[A-Za-z]{1,8}(_[A-Za-z]{2,3})?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?$`)

// Validate checks the options.
func (l *Locale) Validate() error {
	if !langRE.MatchString(l.Language) {
		return fmt.Errorf("language: %q is not a locale such as en_US.UTF-8", l.Language)
	}
	return nil
}

// Builtin reports whether lang needs no generation.
func (l *Locale) Builtin() bool {
	switch l.Language {
	case "C", "POSIX", "C.UTF-8", "C.utf8":
		return true
	}
	return false
}
