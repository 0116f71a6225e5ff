// Package artifacts keeps build artifacts (images, manifests, SBOMs, logs,
// build-info.json) in S3-compatible object storage, so that several
// `kib serve` and `kib worker` machines share them without a shared file
// system (`kib serve --artifacts s3://BUCKET/PREFIX`). Remote workers put
// their artifacts there directly; the server checks them by size and
// sha256, streams them to /composes/{id}/download and into Koji's chunked
// upload.
//
// An artifact's location is its URL, s3://bucket/key; a location that is
// not the store's is a local file, so a nil *Store opens local files.
package artifacts

import (
	"errors"
	"fmt"
	"strings"
)

// Location is where a store keeps artifacts: a bucket and a key prefix.
type Location struct {
	Bucket string
	// Prefix is "" or ends with "/".
	Prefix string
}

// String returns the location as s3://bucket/prefix.
func (l Location) String() string { return "s3://" + l.Bucket + "/" + l.Prefix }

// URL returns the location of an object key.
func (l Location) URL(key string) string { return "s3://" + l.Bucket + "/" + key }

// ParseURL parses s3://BUCKET[/PREFIX]. The bucket must follow S3's naming
// rules; the prefix may not have empty, "." or ".." segments. The error
// states the rule that was broken.
func ParseURL(raw string) (Location, error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return Location{}, errors.New("must be s3://BUCKET[/PREFIX] (an S3-compatible store; the endpoint comes from the [artifacts] table)")
	}
	if strings.ContainsAny(rest, "?#@\\") {
		return Location{}, errors.New("must be s3://BUCKET[/PREFIX] with no user, query or fragment")
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if err := checkBucket(bucket); err != nil {
		return Location{}, err
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		if len(prefix) > 512 {
			return Location{}, errors.New("prefix: longer than 512 bytes")
		}
		for _, seg := range strings.Split(prefix, "/") {
			switch seg {
			case "", ".", "..":
				return Location{}, fmt.Errorf("prefix %q: empty, \".\" and \"..\" path segments are not allowed", prefix)
			}
		}
		for _, r := range prefix {
			if r < 0x20 || r == 0x7f || r == '%' {
				return Location{}, fmt.Errorf("prefix %q: control characters and %% are not allowed", prefix)
			}
		}
		prefix += "/"
	}
	return Location{Bucket: bucket, Prefix: prefix}, nil
}

// checkBucket applies S3's bucket naming rules.
func checkBucket(b string) error {
	rule := "S3 bucket names are 3 to 63 lower-case letters, digits, dots and hyphens, beginning and ending with a letter or digit"
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket %q: %s", b, rule)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && c != '.' && c != '-' || (i == 0 || i == len(b)-1) && !alnum {
			return fmt.Errorf("bucket %q: %s", b, rule)
		}
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("bucket %q: %s, with no two dots in a row", b, rule)
	}
	return nil
}
