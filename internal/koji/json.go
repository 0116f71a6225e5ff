package koji

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// DecodeJSON decodes one JSON value into the Go types the XML-RPC codec
// sends: integers become int64 exactly (never through float64, which
// rounds above 2^53), other numbers float64. An integer outside int64 is an
// error, as it is for Koji's XML-RPC (i8).
func DecodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return FromJSON(v)
}

// FromJSON converts, in place where it can, a value decoded with
// json.Decoder.UseNumber into XML-RPC types (see DecodeJSON).
func FromJSON(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		s := x.String()
		if !strings.ContainsAny(s, ".eE") {
			i, err := x.Int64()
			if err != nil {
				return nil, fmt.Errorf("integer %s does not fit in 64 bits", s)
			}
			return i, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", s, err)
		}
		return f, nil
	case []any:
		for i := range x {
			c, err := FromJSON(x[i])
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	case map[string]any:
		for k := range x {
			c, err := FromJSON(x[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			x[k] = c
		}
	}
	return v, nil
}
