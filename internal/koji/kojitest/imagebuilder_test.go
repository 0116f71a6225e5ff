package kojitest

import (
	"context"
	"errors"
	"testing"

	"github.com/kib-project/kib/internal/koji"
)

// TestImageBuilderBuildKeywordArguments: the hub binds keyword arguments to
// the plugin function's parameters as Python does (Pungi passes everything
// after arches by keyword), and refuses what Python would refuse with the
// TypeError's text as a ParameterError.
func TestImageBuilderBuildKeywordArguments(t *testing.T) {
	h := New(t, Options{})
	h.AddUser("alice", "pw", "image")
	ctx := context.Background()
	alice, err := h.Connector("alice", "pw")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kw := koji.Kwargs{"types": []any{"qcow2"}, "name": "img", "version": "12", "opts": map[string]any{"seed": int64(42)}}
	var id int64
	if err := alice.CallInto(ctx, &id, "imageBuilderBuild", "debian-12", []any{"x86_64"}, kw); err != nil {
		t.Fatal(err)
	}
	info, err := alice.Call(ctx, "getTaskInfo", id, koji.Kwargs{"request": true})
	if err != nil {
		t.Fatal(err)
	}
	req := info.(map[string]any)["request"].([]any)
	if len(req) != 6 || req[3] != "img" || req[4] != "12" || req[5].(map[string]any)["seed"] != int64(42) {
		t.Errorf("request %v, want the positional (target, arches, types, name, version, opts)", req)
	}
	cases := []struct {
		name string
		args []any
		want string
	}{
		{"missing", []any{"debian-12", []any{}, koji.Kwargs{"name": "n"}}, "imageBuilderBuild() missing 2 required positional arguments: 'types' and 'version'"},
		{"unknown keyword", []any{"debian-12", []any{}, []any{"tar"}, "n", "1", koji.Kwargs{"colour": "red"}}, "imageBuilderBuild() got an unexpected keyword argument 'colour'"},
		{"twice", []any{"debian-12", []any{}, []any{"tar"}, "n", "1", koji.Kwargs{"name": "m"}}, "imageBuilderBuild() got multiple values for argument 'name'"},
		{"too many", []any{"debian-12", []any{}, []any{"tar"}, "n", "1", map[string]any{}, int64(1), "x"}, "imageBuilderBuild() takes from 5 to 7 positional arguments but 8 were given"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := alice.Call(ctx, "imageBuilderBuild", tc.args...)
			var f *koji.Fault
			if !errors.As(err, &f) || f.Code != koji.CodeParameter || f.String != tc.want {
				t.Fatalf("got %v, want ParameterError %q", err, tc.want)
			}
		})
	}
}

// TestGetImageBuild: an image build (host.initImageBuild) answers
// {build_id}; other builds and unknown ones are None, or an error when
// strict.
func TestGetImageBuild(t *testing.T) {
	h := New(t, Options{})
	h.AddUser("alice", "pw")
	ctx := context.Background()
	alice, err := h.Connector("alice", "pw")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	img, err := h.newBuild("img", "1", "1", nil, nil)
	if err != nil {
		h.mu.Unlock()
		t.Fatal(err)
	}
	img.image = true
	if _, err := h.newBuild("other", "1", "1", nil, nil); err != nil {
		h.mu.Unlock()
		t.Fatal(err)
	}
	h.mu.Unlock()
	got, err := alice.Call(ctx, "getImageBuild", "img-1-1")
	if m, ok := got.(map[string]any); err != nil || !ok || m["build_id"] != int64(img.id) {
		t.Errorf("getImageBuild(img-1-1) = %v, %v", got, err)
	}
	for _, nvr := range []string{"other-1-1", "none-1-1"} {
		if got, err := alice.Call(ctx, "getImageBuild", nvr); err != nil || got != nil {
			t.Errorf("getImageBuild(%s) = %v, %v, want None", nvr, got, err)
		}
		if _, err := alice.Call(ctx, "getImageBuild", nvr, koji.Kwargs{"strict": true}); err == nil {
			t.Errorf("getImageBuild(%s, strict=True) succeeded", nvr)
		}
	}
}
