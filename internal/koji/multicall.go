package koji

import (
	"context"
	"fmt"
)

// MultiCall is one call of a multicall.
type MultiCall struct {
	Method string
	Args   []any // a trailing Kwargs becomes keyword arguments
}

// MultiResult is the outcome of one call of a multicall: Value, or Err (a
// *Fault) if that call faulted.
type MultiResult struct {
	Value any
	Err   error
}

// Multicall sends calls as one multiCall request (one callnum, one hub
// transaction; a faulting call is rolled back alone). The returned error is
// only about the multicall as a whole.
func (c *Client) Multicall(ctx context.Context, calls []MultiCall) ([]MultiResult, error) {
	list := make([]any, len(calls))
	for i, mc := range calls {
		params := make([]any, len(mc.Args))
		copy(params, mc.Args)
		if n := len(params); n > 0 {
			if kw, ok := params[n-1].(Kwargs); ok {
				params[n-1] = starstar(kw)
			}
		}
		list[i] = map[string]any{"methodName": mc.Method, "params": params}
	}
	v, err := c.Call(ctx, "multiCall", list)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != len(calls) {
		return nil, fmt.Errorf("koji: multiCall: %w: expected %d results, got %T", ErrMalformed, len(calls), v)
	}
	out := make([]MultiResult, len(arr))
	for i, r := range arr {
		switch x := r.(type) {
		case []any:
			if len(x) != 1 {
				return nil, fmt.Errorf("koji: multiCall result %d: %w: %d values", i, ErrMalformed, len(x))
			}
			out[i].Value = x[0]
		case map[string]any:
			f, err := faultFromValue(x)
			if err != nil {
				return nil, fmt.Errorf("koji: multiCall result %d: %w", i, err)
			}
			out[i].Err = f
		default:
			return nil, fmt.Errorf("koji: multiCall result %d: %w: %T", i, ErrMalformed, r)
		}
	}
	return out, nil
}
