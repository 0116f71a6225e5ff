package worker

import (
	"testing"

	"github.com/kib-project/kib/internal/jobs"
)

func TestRequestCarriesEverythingTheAPIAccepted(t *testing.T) {
	a := &jobs.BuildArgs{Distribution: "debian-12", Seed: 42, Image: jobs.ImageRequest{
		Arch: "x86_64", ImageType: "qcow2", Size: 5 << 30,
		Blueprint:    []byte(`{"name":"compose","customizations":{"timezone":{"ntpservers":["ntp.example.org"]},"locale":{"keyboard":"de"}}}`),
		Repositories: []jobs.Repository{{BaseURL: "https://r.example.org/debian", GPGKey: "K", CheckGPG: true, PackageSets: []string{"os"}}},
	}}
	req, err := Request(a)
	if err != nil {
		t.Fatal(err)
	}
	if req.Size == nil || *req.Size != 5<<30 || req.Seed == nil || *req.Seed != 42 {
		t.Errorf("size/seed = %v/%v", req.Size, req.Seed)
	}
	if tz := req.Blueprint.Customizations.Timezone; tz == nil || len(tz.NTPServers) != 1 || req.Blueprint.Customizations.Locale.Keyboard != "de" {
		t.Errorf("blueprint = %+v", req.Blueprint.Customizations)
	}
	r := req.Repositories[0]
	if r.Source != "https://r.example.org/debian" || r.GPGKey != "K" || !r.CheckGPG || len(r.PackageSets) != 1 {
		t.Errorf("repository = %+v", r)
	}
	a.Image.Size = 1 << 63
	if _, err := Request(a); err == nil {
		t.Error("a size above int64 was accepted")
	}
}
