package stages

import "testing"

func TestMemTreeSize(t *testing.T) {
	const gib = int64(1) << 30
	idx := []byte("Package: a\nInstalled-Size: 1048576\nFilename: pool/a.deb\n\n" +
		"Package: b\nInstalled-Size: 524288\n\nPackage: c\nInstalled-Size: bogus\n\nPackage: d\n")
	if got, want := installedSize(idx), int64(1536)<<20; got != want {
		t.Fatalf("installedSize = %d, want %d", got, want)
	}
	est := int64(1536) << 20 * 5 / 4 // 1.875 GiB
	for _, tc := range []struct {
		name      string
		idx       []byte
		available int64
		off       bool
		limit     int64
	}{
		{"enough memory", idx, 8 * gib, false, 7 * gib},
		{"just enough", idx, 2*est + memReserve, false, 2 * est},
		{"too little", idx, 2*est + memReserve - 1, false, 0},
		{"unknown memory", idx, 0, false, 0},
		{"switched off", idx, 64 * gib, true, 0},
		{"no sizes in the index", []byte("Package: a\n"), 64 * gib, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.off {
				t.Setenv("KIB_BUILD_IN_MEMORY", "off")
			}
			limit, _ := memTreeSize(tc.idx, tc.available)
			if limit != tc.limit {
				t.Errorf("limit = %d, want %d", limit, tc.limit)
			}
		})
	}
}

func TestParseMemAvailable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"MemTotal:       24683568 kB\nMemFree:        23421000 kB\nMemAvailable:   23619000 kB\n", 23619000 << 10},
		{"MemTotal:       24683568 kB\n", 0},
		{"MemAvailable: lots\n", 0},
		{"", 0},
	} {
		if got := parseMemAvailable([]byte(tc.in)); got != tc.want {
			t.Errorf("parseMemAvailable(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if memAvailable() <= 0 {
		t.Error("memAvailable: no MemAvailable read from /proc/meminfo")
	}
}
