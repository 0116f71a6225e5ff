package koji

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    any
		wantErr string
	}{
		// 2^53+1 and the largest int64 survive exactly; through float64
		// they would round.
		{in: `9007199254740993`, want: int64(9007199254740993)},
		{in: `9223372036854775807`, want: int64(9223372036854775807)},
		{in: `-12`, want: int64(-12)},
		{in: `1.5`, want: 1.5},
		{in: `1e3`, want: 1000.0},
		{in: `{"build_id":9007199254740993,"xs":[1,"a",true,null]}`, want: map[string]any{"build_id": int64(9007199254740993), "xs": []any{int64(1), "a", true, nil}}},
		{in: `9223372036854775808`, wantErr: "does not fit"},
		{in: `{"a":[18446744073709551616]}`, wantErr: "a: integer"},
		{in: `1 2`, wantErr: "after"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := DecodeJSON([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`9007199254740993`, `{"a":[1,2.5,"x",null,true]}`, `1e999`, `-0`, `[`, `9223372036854775808`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := DecodeJSON([]byte(s))
		if err != nil {
			return
		}
		// Whatever decodes must encode as XML-RPC.
		var buf strings.Builder
		if err := EncodeCall(&buf, "m", v); err != nil {
			t.Fatalf("DecodeJSON(%q) = %#v, which does not encode: %v", s, v, err)
		}
	})
}
