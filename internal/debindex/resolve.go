package debindex

import (
	"fmt"
	"sort"
	"strings"
)

// Index is a set of packages to resolve against, from one or more
// repositories' Packages files.
type Index struct {
	arch     string
	byName   map[string][]*Package
	provides map[string][]provider
}

type provider struct {
	pkg     *Package
	version string // the provided version; "" if unversioned
}

// NewIndex indexes pkgs for architecture arch; packages of other
// architectures than arch and "all" are ignored.
func NewIndex(arch string, pkgs []Package) *Index {
	ix := &Index{arch: arch, byName: map[string][]*Package{}, provides: map[string][]provider{}}
	for i := range pkgs {
		p := &pkgs[i]
		if p.Arch != arch && p.Arch != "all" {
			continue
		}
		ix.byName[p.Name] = append(ix.byName[p.Name], p)
		for _, pv := range p.Provides {
			ix.provides[pv.Name] = append(ix.provides[pv.Name], provider{p, pv.Version})
		}
	}
	// The candidate of a name is its highest version, as apt's default.
	for _, ps := range ix.byName {
		sort.SliceStable(ps, func(i, j int) bool { return CompareVersions(ps[i].Version, ps[j].Version) > 0 })
	}
	return ix
}

// candidate returns the package apt would install for name.
func (ix *Index) candidate(name string) *Package {
	if ps := ix.byName[name]; len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// satisfy returns the package that satisfies d among those selected or, if
// none is, the candidate that would: a real package first, else the only (or
// first by name) provider.
func (ix *Index) satisfy(d Dep, chosen map[string]*Package) (*Package, bool) {
	if c := ix.candidate(d.Name); c != nil && Satisfies(c.Version, d.Op, d.Version) {
		return c, true
	}
	var provs []*Package
	for _, pv := range ix.provides[d.Name] {
		if d.Op != "" && (pv.version == "" || !Satisfies(pv.version, d.Op, d.Version)) {
			continue
		}
		if ix.candidate(pv.pkg.Name) != pv.pkg {
			continue
		}
		if chosen[pv.pkg.Name] == pv.pkg {
			return pv.pkg, true
		}
		provs = append(provs, pv.pkg)
	}
	if len(provs) == 0 {
		return nil, false
	}
	sort.Slice(provs, func(i, j int) bool { return provs[i].Name < provs[j].Name })
	return provs[0], true
}

// Essential returns the names of the packages whose candidate is
// Essential, sorted.
func (ix *Index) Essential() []string {
	var out []string
	for name := range ix.byName {
		if ix.candidate(name).Essential {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Closure returns the packages names need, with their Depends and
// Pre-Depends, sorted by name. For each group of alternatives it takes the
// first one that is already selected, else the first one the index can
// satisfy, as apt does for a simple set; it does not handle Conflicts or
// Breaks, so it is for small tool sets (apt and its libraries), not for
// images.
func (ix *Index) Closure(names []string) ([]Package, error) {
	chosen := map[string]*Package{}
	var queue []*Package
	add := func(p *Package) {
		if chosen[p.Name] == nil {
			chosen[p.Name] = p
			queue = append(queue, p)
		}
	}
	for _, n := range names {
		p, ok := ix.satisfy(Dep{Name: n}, chosen)
		if !ok {
			return nil, fmt.Errorf("package %s is not in the repositories (architecture %s)", n, ix.arch)
		}
		add(p)
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, group := range append(append([][]Dep{}, p.PreDepends...), p.Depends...) {
			var pick *Package
			// An alternative already selected wins.
			for _, d := range group {
				if s, ok := ix.satisfy(d, chosen); ok && chosen[s.Name] == s {
					pick = s
					break
				}
			}
			if pick == nil {
				for _, d := range group {
					if s, ok := ix.satisfy(d, chosen); ok {
						pick = s
						break
					}
				}
			}
			if pick == nil {
				return nil, fmt.Errorf("%s %s depends on %s, which the repositories cannot satisfy", p.Name, p.Version, formatGroup(group))
			}
			add(pick)
		}
	}
	out := make([]Package, 0, len(chosen))
	for _, p := range chosen {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func formatGroup(g []Dep) string {
	parts := make([]string, len(g))
	for i, d := range g {
		parts[i] = d.Name
		if d.Op != "" {
			parts[i] += " (" + d.Op + " " + d.Version + ")"
		}
	}
	return strings.Join(parts, " | ")
}
