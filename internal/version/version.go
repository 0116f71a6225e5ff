// Package version reports the version of kib and of the modules it was built with.
package version

import (
	"runtime/debug"
	"sync"
)

// Version is kib's release version. Release builds set it with
// -ldflags "-X github.com/kib-project/kib/internal/version.Version=...".
var Version = "0.1.0-dev"

// Dep is one Go module kib was built with.
type Dep struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Replace *Dep   `json:"replace,omitempty"`
}

// String returns kib's version.
func String() string { return Version }

var deps = sync.OnceValue(func() []Dep {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	var out []Dep
	for _, m := range bi.Deps {
		d := Dep{Path: m.Path, Version: m.Version}
		if m.Replace != nil {
			d.Replace = &Dep{Path: m.Replace.Path, Version: m.Replace.Version}
		}
		out = append(out, d)
	}
	return out
})

// Deps returns the Go modules kib was built with, in build-info order.
func Deps() []Dep { return deps() }
