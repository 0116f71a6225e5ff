package kojitest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/koji"
)

// TestOSBuildImageSchema checks the hub plugin's argument checks: the
// ParameterError's first line is the message of Python jsonschema's
// ValidationError for the same input, followed by where it failed.
func TestOSBuildImageSchema(t *testing.T) {
	h := New(t, Options{})
	h.AddUser("alice", "pw", "image")
	h.AddUser("bob", "pw")
	ctx := context.Background()
	alice, err := h.Connector("alice", "pw")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := func() []any {
		return []any{"name", "1", "debian-12", "tar", "target", []any{"x86_64"}, map[string]any{}}
	}
	with := func(i int, v any) []any {
		a := good()
		a[i] = v
		return a
	}
	opts := func(o map[string]any) []any { return with(6, o) }
	tests := []struct {
		name     string
		args     []any
		msg, loc string
	}{
		{"name type", with(0, int64(1)), "1 is not of type 'string'", "On instance[0]:"},
		{"image type list too long", with(3, []any{"a", "b"}), "['a', 'b'] is not valid under any of the given schemas", "On instance[3]:"},
		{"no arches", with(5, []any{}), "[] is too short", "On instance[5]:"},
		{"arch type", with(5, []any{"x86_64", true}), "True is not of type 'string'", "On instance[5][1]:"},
		{"opts None", with(6, nil), "None is not of type 'object'", "On instance[6]:"},
		{"unknown option", opts(map[string]any{"colour": "red"}), "Additional properties are not allowed ('colour' was unexpected)", "On instance[6]:"},
		{"repo without baseurl", opts(map[string]any{"repo": []any{map[string]any{"package_sets": []any{"a"}}}}),
			"{'package_sets': ['a']} is not valid under any of the given schemas", "On instance[6]['repo'][0]:"},
		{"ostree key", opts(map[string]any{"ostree": map[string]any{"branch": "x"}}), "Additional properties are not allowed ('branch' was unexpected)", "On instance[6]['ostree']:"},
		{"skip_tag type", opts(map[string]any{"skip_tag": "yes"}), "'yes' is not of type 'boolean'", "On instance[6]['skip_tag']:"},
		{"release type", opts(map[string]any{"release": int64(3)}), "3 is not of type 'string'", "On instance[6]['release']:"},
		{"upload options", opts(map[string]any{"upload_options": map[string]any{"bogus": true}}),
			"{'bogus': True} is not valid under any of the given schemas", "On instance[6]['upload_options']:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := alice.Call(ctx, "osbuildImage", tc.args...)
			var f *koji.Fault
			if !errors.As(err, &f) || f.Code != koji.CodeParameter {
				t.Fatalf("got %v, want a ParameterError", err)
			}
			first, rest, _ := strings.Cut(f.String, "\n")
			if first != tc.msg || !strings.Contains(rest, tc.loc) {
				t.Errorf("fault %q, want first line %q and %q", f.String, tc.msg, tc.loc)
			}
		})
	}
	if _, err := alice.Call(ctx, "osbuildImage", "n", "1", "d", "t"); err == nil || !strings.Contains(err.Error(), "osbuildImage() missing 2 required positional arguments: 'target' and 'arches'") {
		t.Errorf("too few arguments: %v", err)
	}

	bob, err := h.Connector("bob", "pw")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f *koji.Fault
	if _, err := bob.Call(ctx, "osbuildImage", good()...); !errors.As(err, &f) || f.Code != koji.CodeActionNotAllowed {
		t.Errorf("without the image permission: %v", err)
	}
	if _, err := alice.Call(ctx, "osbuildImage", append(good(), int64(-1))...); !errors.As(err, &f) || f.Code != koji.CodeActionNotAllowed {
		t.Errorf("negative priority as non-admin: %v", err)
	}

	// Valid calls: the deprecated one-element list becomes the string, and
	// the task waits in the image channel as noarch.
	ok := with(3, []any{"qcow2"})
	ok[6] = map[string]any{"release": "1", "skip_tag": true, "repo": []any{"http://r/$arch", map[string]any{"baseurl": "http://s", "package_sets": []any{"os"}}},
		"ostree": map[string]any{"ref": "debian/12/$arch/edge", "url": "http://o"}, "customizations": map[string]any{"packages": []any{"vim"}},
		"upload_options": map[string]any{"region": "eu-west-1", "share_with_accounts": []any{"123"}}}
	var id int64
	if err := alice.CallInto(ctx, &id, "osbuildImage", ok...); err != nil {
		t.Fatal(err)
	}
	info, err := alice.GetTaskInfo(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := info.Request.([]any)
	if info.Method != "osbuildImage" || info.Arch != "noarch" || info.Channel != int64(h.channels["image"]) || len(req) != 7 || req[3] != "qcow2" {
		t.Errorf("task = %+v", info)
	}
}
