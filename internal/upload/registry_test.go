package upload

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type nop struct{}

func (nop) Upload(context.Context, Artifact, json.RawMessage, Progress) (Result, error) {
	return Result{}, nil
}

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		imageType, target string
		want              bool
	}{
		{"ami", "aws", true},
		{"ami", "aws.s3", false},
		{"vhd", "azure", true},
		{"gce", "gcp", true},
		{"container", "container", true},
		{"container", "aws.s3", false},
		{"qcow2", "aws.s3", true},
		{"raw", "aws.s3", true},
		{"tar", "aws.s3", true},
		{"qcow2", "aws", false},
		{"iso", "aws.s3", false},
		{"qcow2", "", false},
	} {
		if got := Allowed(tc.imageType, tc.target); got != tc.want {
			t.Errorf("Allowed(%q, %q) = %v, want %v", tc.imageType, tc.target, got, tc.want)
		}
	}
}

func TestFor(t *testing.T) {
	u := Uploaders{TargetAWSS3: nop{}, TargetContainer: nop{}}
	if _, err := u.For(TargetAWSS3); err != nil {
		t.Fatal(err)
	}
	_, err := u.For(TargetAWS)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "aws.s3, container") {
		t.Errorf("For(aws) = %v", err)
	}
	if Uploaders(nil).Supports(TargetAWS) || !u.Supports(TargetContainer) {
		t.Error("Supports")
	}
	if OSBuildTargetName(TargetAzure) != "org.osbuild.azure.image" || OSBuildTargetName(TargetAWSS3) != "org.osbuild.aws.s3" {
		t.Error("OSBuildTargetName")
	}
}
