package main

import (
	"reflect"
	"testing"
)

func TestParseArgKeepsIntegersExact(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"9007199254740993", int64(9007199254740993)},
		{`{"build_id":9007199254740993}`, map[string]any{"build_id": int64(9007199254740993)}},
		{"1.5", 1.5},
		{"hello", "hello"},
		{"[1,2", "[1,2"},
	}
	for _, tt := range tests {
		got, err := parseArg(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseArg(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseArg("99999999999999999999"); err == nil {
		t.Error("an integer beyond int64 was rounded instead of refused")
	}
}
