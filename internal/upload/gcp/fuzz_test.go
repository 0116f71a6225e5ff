package gcp

import (
	"encoding/json"
	"strconv"
	"strings"
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

// FuzzParseRange: a session's Range header gives the next offset or an
// error, never a panic or a negative offset; an accepted header names the
// byte before that offset.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"", "bytes=0-0", "bytes=0-262143", "bytes=0-", "bytes=1-5", "bytes=0-9223372036854775807", "bytes=0-+5", "bytes=0--1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		next, err := parseRange(h)
		if err != nil {
			return
		}
		if next < 0 || (h == "") != (next == 0) {
			t.Fatalf("parseRange(%q) = %d", h, next)
		}
		if h != "" {
			n, _ := strconv.ParseInt(strings.TrimPrefix(h, "bytes=0-"), 10, 64)
			if n+1 != next {
				t.Fatalf("parseRange(%q) = %d", h, next)
			}
		}
	})
}
