package gcp

import (
	"encoding/json"
	"testing"
)

// FuzzParseOptions: any bytes give options or an error, never a panic, and
// accepted options have a region and well-formed names.
func FuzzParseOptions(f *testing.F) {
	f.Add([]byte(`{"region":"eu","bucket":"b","image_name":"debian-12","share_with_accounts":["user:a@example.com"]}`))
	f.Add([]byte(`{"region":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOptions(json.RawMessage(b))
		if err != nil {
			return
		}
		if o.Region == "" {
			t.Fatalf("accepted %q without a region", b)
		}
		if o.ImageName != "" && !imageNameRE.MatchString(o.ImageName) {
			t.Fatalf("accepted image name %q", o.ImageName)
		}
	})
}
