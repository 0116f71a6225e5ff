package manifest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readGolden(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "tar.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseCanonicalRoundTrip(t *testing.T) {
	data := readGolden(t)
	m, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c, bytes.TrimSpace(data)) {
		t.Fatalf("canonical encoding differs from the golden file:\n%s", c)
	}
	m2, err := Parse(bytes.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := m.Digest()
	d2, _ := m2.Digest()
	if d1 != d2 {
		t.Fatalf("digest changed after a round trip: %s != %s", d1, d2)
	}
}

func TestCanonicalize(t *testing.T) {
	got, err := Canonicalize([]byte(`{ "b": [1, 2.50, {"z": "<&>", "a": null}], "a": true }`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":true,"b":[1,2.50,{"a":null,"z":"<&>"}]}`; string(got) != want {
		t.Fatalf("Canonicalize = %s, want %s", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	golden := string(readGolden(t))
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown field", `"version":1`, `"version":1,"extra":2`, `unknown field "extra"`},
		{"version", `"version":1`, `"version":7`, "version: 7 is not supported"},
		{"sha256", `"sha256":"`, `"sha256":"XY`, "sources.debs[0].sha256"},
		{"url", `"url":"http`, `"url":"gopher`, "sources.debs[0].url"},
		{"stage type", `"type":"hostname"`, `"type":"no-such-stage"`, `unknown stage type "no-such-stage"`},
		{"stage option", `"hostname":"localhost"`, `"hostname":"bad host!"`, `hostname: "bad host!"`},
		{"stage unknown option", `"hostname":"localhost"`, `"hostname":"localhost","colour":"red"`, `unknown field "colour"`},
		{"export", `"name":"archive"}`, `"name":"nope"}`, `exports[0].name: "nope" is not a pipeline`},
		{"input", `"source":"os"`, `"source":"later"`, `input pipeline "later" must come earlier`},
		{"boot mode", `"boot_mode":"none"`, `"boot_mode":"bios"`, "exports[0].boot_mode"},
		{"not json", `{`, `[`, "manifest:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(golden, tt.from, tt.to, 1)
			if in == golden {
				t.Fatalf("test input unchanged: %q not in golden file", tt.from)
			}
			_, err := Parse(strings.NewReader(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidationErrorListsAll(t *testing.T) {
	m := &Manifest{}
	err := m.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want a ValidationError", err)
	}
	for _, want := range []string{"version", "generator", "distro", "arch", "pipelines", "exports"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "tar.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"pipelines":[{"stages":[{"type":"tar","options":{"source":"x"}}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		c, err := m.Canonical()
		if err != nil {
			t.Fatalf("valid manifest cannot be encoded: %v", err)
		}
		m2, err := Parse(bytes.NewReader(c))
		if err != nil {
			t.Fatalf("canonical form of a valid manifest does not parse: %v", err)
		}
		c2, _ := m2.Canonical()
		if !bytes.Equal(c, c2) {
			t.Fatal("canonical encoding is not stable")
		}
	})
}
