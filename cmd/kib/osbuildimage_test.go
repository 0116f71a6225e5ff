package main

import (
	"strings"
	"testing"
)

func TestKojiOSBuildImageFlagErrors(t *testing.T) {
	base := []string{"koji", "osbuild-image", "--server", "http://127.0.0.1:1/kojihub"}
	args := []string{"n", "1", "debian-12", "target", "x86_64"}
	tests := []struct {
		flags []string
		want  string
	}{
		{[]string{"--image-type", "tar", "--image-type", "qcow2"}, "--image-type given 2 times"},
		{[]string{"--repo-package-sets", "a"}, "needs a --repo before it"},
		{[]string{"--wait", "--nowait"}, "--wait and --nowait"},
		{[]string{"--customizations", "/nonexistent.json"}, "--customizations:"},
	}
	for _, tc := range tests {
		out, err := runKib(t, append(append(append([]string{}, base...), tc.flags...), args...)...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: %v %s, want %q", tc.flags, err, out, tc.want)
		}
	}
	if _, err := runKib(t, "koji", "osbuild-image", "--server", "http://x", "n", "1", "d", "t"); err == nil {
		t.Error("four arguments accepted")
	}
}
