package kojid

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kib-project/kib/internal/koji"
)

// FuzzBuildArgs feeds imageBuilderBuild requests (as host.openTask returns
// them, methodCall XML) to the argument parser: it must return arguments or
// a ParameterError/BuildError, never panic.
func FuzzBuildArgs(f *testing.F) {
	for _, args := range [][]any{
		{"debian-12", []any{"x86_64"}, []any{"tar"}, "n", "1", map[string]any{"scratch": true, "repos": []any{"http://x/$arch"}, "seed": int64(3)}},
		{"t", []any{}, []any{"qcow2"}, "n", "1", map[string]any{"ostree": map[string]any{"ref": "r"}}},
		{"t", "x", []any{}, "n", "1"},
	} {
		var buf bytes.Buffer
		if err := koji.EncodeCall(&buf, "imageBuilderBuild", args...); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, params, err := koji.DecodeCall(bytes.NewReader(data))
		if err != nil {
			return
		}
		args, kw := koji.SplitKwargs(params)
		a, err := ParseBuildArgs(args, kw)
		if err != nil {
			var f *koji.Fault
			if !errors.As(err, &f) || (f.Code != koji.CodeParameter && f.Code != koji.CodeBuild) {
				t.Fatalf("error %v is not a ParameterError or BuildError", err)
			}
			return
		}
		if len(a.Types) == 0 || a.Opts == nil {
			t.Fatalf("accepted %+v", a)
		}
	})
}
