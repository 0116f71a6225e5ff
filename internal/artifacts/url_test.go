package artifacts_test

import (
	"strings"
	"testing"

	"github.com/kib-project/kib/internal/artifacts"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    artifacts.Location
		wantErr string
	}{
		{"s3://kib-artifacts", artifacts.Location{Bucket: "kib-artifacts"}, ""},
		{"s3://kib-artifacts/", artifacts.Location{Bucket: "kib-artifacts"}, ""},
		{"s3://kib.artifacts/prod/eu", artifacts.Location{Bucket: "kib.artifacts", Prefix: "prod/eu/"}, ""},
		{"s3://b01/p/", artifacts.Location{Bucket: "b01", Prefix: "p/"}, ""},
		{"", artifacts.Location{}, "must be s3://BUCKET[/PREFIX]"},
		{"/var/lib/kib/artifacts", artifacts.Location{}, "must be s3://BUCKET[/PREFIX]"},
		{"https://minio:9000/bucket", artifacts.Location{}, "must be s3://BUCKET[/PREFIX]"},
		{"S3://bucket", artifacts.Location{}, "must be s3://BUCKET[/PREFIX]"},
		{"s3://", artifacts.Location{}, "bucket \"\": S3 bucket names are 3 to 63"},
		{"s3://ab", artifacts.Location{}, "3 to 63"},
		{"s3://Kib-Artifacts", artifacts.Location{}, "lower-case"},
		{"s3://kib_artifacts", artifacts.Location{}, "lower-case"},
		{"s3://-kib", artifacts.Location{}, "beginning and ending with a letter or digit"},
		{"s3://kib-", artifacts.Location{}, "beginning and ending with a letter or digit"},
		{"s3://kib..a", artifacts.Location{}, "no two dots"},
		{"s3://" + strings.Repeat("a", 64), artifacts.Location{}, "3 to 63"},
		{"s3://user@bucket/p", artifacts.Location{}, "no user, query or fragment"},
		{"s3://bucket/p?versionId=1", artifacts.Location{}, "no user, query or fragment"},
		{"s3://bucket:9000/p", artifacts.Location{}, "lower-case"},
		{"s3://bucket//p", artifacts.Location{}, "empty, \".\" and \"..\" path segments"},
		{"s3://bucket/a/../b", artifacts.Location{}, "empty, \".\" and \"..\" path segments"},
		{"s3://bucket/a/./b", artifacts.Location{}, "empty, \".\" and \"..\" path segments"},
		{"s3://bucket/a%2Fb", artifacts.Location{}, "%"},
		{"s3://bucket/a\nb", artifacts.Location{}, "control characters"},
		{"s3://bucket/" + strings.Repeat("p", 513), artifacts.Location{}, "longer than 512 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := artifacts.ParseURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURL(%q) = %+v, %v; want an error mentioning %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseURL(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if again, err := artifacts.ParseURL(got.String()); err != nil || again != got {
				t.Errorf("ParseURL(%q) (its String) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

// FuzzParseURL: any input gives a location or an error, never a panic, and
// a location round-trips through its String.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://kib-artifacts/prod", "s3://b..c", "s3://bucket//x", "s3://a/%41", "s3://abc/./", "", "s3://abc/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := artifacts.ParseURL(s)
		if err != nil {
			return
		}
		again, err := artifacts.ParseURL(loc.String())
		if err != nil || again != loc {
			t.Fatalf("ParseURL(%q) = %+v, but its String %q parses as %+v, %v", s, loc, loc.String(), again, err)
		}
	})
}
