package layering

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kib-project/kib/"

// rank is each package's layer: a package may import only packages of its
// own layer or below. A new package must be placed here.
var rank = map[string]int{
	"cmd/kib": 6,

	// services
	"internal/composer": 5, "internal/worker": 5, "internal/kojid": 5, "internal/metrics": 5,
	"internal/reproduce": 5, "internal/kojid/hosttest": 5,

	// the job graph
	"internal/jobs": 4, "internal/jobs/jobstest": 4,

	// following Koji tasks (kib koji watch-task, kib kojid)
	"internal/kojiwatch": 4,

	// what jobs drive
	"internal/engine": 3, "internal/engine/stages": 3, "internal/upload": 3,
	"internal/koji": 3, "internal/koji/kojitest": 3, "internal/kojimeta": 3, "internal/kojiimport": 3,
	"internal/boottest": 3, "internal/artifacts": 3, "internal/aptroot": 3,

	// the resolver and what reads manifests
	"internal/resolve": 2, "internal/sbom": 2,

	// requests and manifests
	"internal/manifest": 1, "internal/distro": 1, "internal/depsolve": 1, "internal/blueprint": 1,

	// leaves
	"internal/store": 0, "internal/hostcmd": 0, "internal/redact": 0, "internal/version": 0,
	"internal/progress": 0, "internal/adler": 0, "internal/sparse": 0, "internal/debindex": 0, "internal/fetch": 0, "internal/buildinfo": 0, "internal/debtest": 0,
	"internal/layering": 0, "internal/stageopt": 0, "api": 0, "distros": 0,
}

// banned are imports the ranks allow but the design does not: the engine
// knows nothing of Koji, uploads or HTTP services.
var banned = map[string][]string{
	"internal/engine":        {"internal/koji", "internal/kojimeta", "internal/kojiimport", "internal/upload"},
	"internal/engine/stages": {"internal/koji", "internal/kojimeta", "internal/kojiimport", "internal/upload", "internal/engine"},
	"internal/koji":          {"internal/engine", "internal/engine/stages"},
	"internal/kojiimport":    {"internal/engine", "internal/engine/stages"},
	// Stage options are data: the manifest and the API use them without
	// the host tools.
	"internal/stageopt": {"internal/hostcmd"},
}

// notLinked are packages a package must not link even through others: the
// compose API and the manifests it makes need none of the build code.
var notLinked = map[string][]string{
	"internal/manifest": {"internal/engine", "internal/engine/stages"},
	"internal/composer": {"internal/engine", "internal/engine/stages"},
	"internal/stageopt": {"internal/hostcmd"},
}

// testHelpers may only be imported by tests and by each other.
var testHelpers = []string{"internal/koji/kojitest", "internal/jobs/jobstest", "internal/debtest", "internal/kojid/hosttest"}

// known are violations that exist today, each with the work that removes
// it. The test fails when one disappears, so the list stays true.
var known = map[string]string{}

func rankOf(pkg string) (int, bool) {
	if r, ok := rank[pkg]; ok {
		return r, true
	}
	// Sub-packages of upload (aws, awss3, ...) sit with upload.
	if strings.HasPrefix(pkg, "internal/upload/") {
		return rank["internal/upload"], true
	}
	return 0, false
}

func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok || strings.HasPrefix(pkg, "bench/") || strings.HasPrefix(pkg, "scripts") {
			continue
		}
		r, ok := rankOf(pkg)
		if !ok {
			t.Errorf("%s: not in the layering table; give it its layer in rank", pkg)
			continue
		}
		for _, imp := range f[1:] {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			edge := pkg + " -> " + dep
			if _, ok := known[edge]; ok {
				seen[edge] = true
				continue
			}
			dr, ok := rankOf(dep)
			switch {
			case !ok:
				t.Errorf("%s: %s is not in the layering table", edge, dep)
			case dr > r:
				t.Errorf("%s: imports a package above it (layer %d > %d)", edge, dr, r)
			case slices.Contains(banned[pkg], dep):
				t.Errorf("%s: not allowed by the design", edge)
			case slices.Contains(testHelpers, dep) && !slices.Contains(testHelpers, pkg):
				t.Errorf("%s: production code imports a test helper", edge)
			}
		}
	}
	for edge, fix := range known {
		if !seen[edge] {
			t.Errorf("known violation %s is gone (%s): remove it from known", edge, fix)
		}
	}
}

func TestNotLinked(t *testing.T) {
	for pkg, deny := range notLinked {
		out, err := exec.Command("go", "list", "-deps", module+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		for _, d := range deny {
			if slices.Contains(deps, module+d) {
				t.Errorf("%s links %s (through its imports); it must not", pkg, d)
			}
		}
	}
}
