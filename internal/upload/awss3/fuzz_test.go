package awss3_test

import (
	"encoding/json"
	"testing"

	"github.com/kib-project/kib/internal/upload/aws"
	"github.com/kib-project/kib/internal/upload/awss3"
	"github.com/kib-project/kib/internal/upload/container"
)

// FuzzParseOptions feeds upload_options to every target's parser: they
// return values or errors, never panic.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{`{"region":"r"}`, `{"region":"r","public":true}`, `{"region":"r","share_with_accounts":["123456789012"]}`, `{"name":"a","tag":"b"}`, ``, `null`, `[]`, `{"region":`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw := json.RawMessage(s)
		_, _ = awss3.ParseOptions(raw)
		_, _ = aws.ParseOptions(raw)
		_, _ = container.ParseOptions(raw)
	})
}
