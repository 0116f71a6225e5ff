// Package stageopt holds the options of kib's build stages: for each stage
// type, the struct a manifest carries (with its JSON form) and the checks of
// its values, and the disk layouts that produce them. It is a leaf: the
// manifest generator and validator use it without linking the stages' code
// or the host tools, and internal/engine/stages defines each runnable stage
// over its options type here. Each options type is named after its stage
// and documented with what the stage does.
package stageopt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// validator is implemented by options that check their values beyond types.
type validator interface {
	Validate() error
}

// InputReader is implemented by options of stages that read the outputs of
// earlier pipelines; those pipelines must come first.
type InputReader interface {
	InputNames() []string
}

type factory func(json.RawMessage) (any, error)

var registry = map[string]factory{}

// register adds the stage type name with options type T. It is called from
// init functions, one per stage file.
func register[T any](name string) {
	if _, dup := registry[name]; dup {
		panic("stageopt: duplicate stage type " + name)
	}
	registry[name] = func(raw json.RawMessage) (any, error) {
		opts := new(T)
		if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(opts); err != nil {
				return nil, fmt.Errorf("options: %w", err)
			}
		}
		if v, ok := any(opts).(validator); ok {
			if err := v.Validate(); err != nil {
				return nil, fmt.Errorf("options: %w", err)
			}
		}
		return opts, nil
	}
}

// UnknownTypeError reports a stage type kib does not have.
type UnknownTypeError struct{ Type string }

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("unknown stage type %q (known: %s)", e.Type, strings.Join(Types(), ", "))
}

// New decodes the options of a stage of type typ, rejecting unknown fields and
// invalid values. It returns a pointer to the type's options struct
// (*Mmdebstrap for "mmdebstrap").
func New(typ string, options json.RawMessage) (any, error) {
	f, ok := registry[typ]
	if !ok {
		return nil, &UnknownTypeError{Type: typ}
	}
	return f(options)
}

// Types lists the registered stage types, sorted.
func Types() []string { return slices.Sorted(maps.Keys(registry)) }
