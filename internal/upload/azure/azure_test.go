package azure

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/azure/armtest"
	"github.com/kib-project/kib/internal/upload/emulatortest"
)

// countingTransport counts the Put Page requests the service accepted.
type countingTransport struct {
	base     http.RoundTripper
	putPages atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil && r.Method == http.MethodPut && r.URL.Query().Get("comp") == "page" && resp.StatusCode == http.StatusCreated {
		c.putPages.Add(1)
	}
	return resp, err
}

type env struct {
	arm  *armtest.Server
	blob string
	ct   *countingTransport
	cfg  Config
}

func setup(t *testing.T) *env {
	t.Helper()
	ep := emulatortest.Azurite(t)
	s := armtest.New()
	t.Cleanup(s.Close)
	s.Groups["kib-rg"] = "westeurope"
	s.BlobEndpoint = ep + "/"
	s.AccountKey = emulatortest.AzuriteKey
	ct := &countingTransport{base: s.Client().Transport}
	return &env{arm: s, blob: ep, ct: ct, cfg: Config{
		ClientID: s.ClientID, ClientSecret: s.ClientSecret,
		ResourceManager: s.URL, AuthorityHost: s.URL + "/",
		// Each test its own container: Azurite is shared.
		Container:     "kib" + strings.ToLower(hex.EncodeToString(randBytes(6))),
		HTTPClient:    &http.Client{Transport: ct},
		PollFrequency: 10 * time.Millisecond,
	}}
}

func (e *env) options(extra map[string]any) json.RawMessage {
	o := map[string]any{"tenant_id": e.arm.Tenant, "subscription_id": e.arm.Subscription, "resource_group": "kib-rg"}
	for k, v := range extra {
		o[k] = v
	}
	b, _ := json.Marshal(o)
	return b
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

// makeVHD writes a sparse fixed VHD of virtMiB MiB whose data lies at the
// given MiB offsets (64 KiB of random bytes each), and returns its artifact.
func makeVHD(t testing.TB, dir string, virtMiB int64, dataAtMiB []int64, bootMode string) upload.Artifact {
	t.Helper()
	path := filepath.Join(dir, "disk.vhd")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	virt := virtMiB << 20
	if err := f.Truncate(virt); err != nil {
		t.Fatal(err)
	}
	for _, m := range dataAtMiB {
		if _, err := f.WriteAt(randBytes(64<<10), m<<20+4096); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.WriteAt(vhdFooter(virt), virt); err != nil {
		t.Fatal(err)
	}
	sum, size := fileSHA256(t, path)
	return upload.Artifact{Path: path, Filename: "disk.vhd", ImageType: "vhd", Arch: "x86_64", BootMode: bootMode, SHA256: sum, Size: size}
}

// vhdFooter is a fixed VHD footer for a disk of size bytes (Microsoft's
// Virtual Hard Disk Image Format Specification).
func vhdFooter(size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:8], "conectix")
	binary.BigEndian.PutUint32(b[8:], 2)           // features: reserved
	binary.BigEndian.PutUint32(b[12:], 0x00010000) // version 1.0
	binary.BigEndian.PutUint64(b[16:], ^uint64(0)) // data offset: none (fixed)
	copy(b[28:32], "kib ")
	binary.BigEndian.PutUint64(b[40:], uint64(size))
	binary.BigEndian.PutUint64(b[48:], uint64(size))
	binary.BigEndian.PutUint32(b[60:], 2) // fixed
	var sum uint32
	for _, c := range b {
		sum += uint32(c)
	}
	binary.BigEndian.PutUint32(b[64:], ^sum)
	return b
}

func fileSHA256(t testing.TB, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// blobSHA256 downloads a blob from Azurite and hashes it.
func blobSHA256(t *testing.T, e *env, blobName string) string {
	t.Helper()
	cred, err := service.NewSharedKeyCredential("devstoreaccount1", emulatortest.AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := blob.NewClientWithSharedKeyCredential(e.blob+"/"+e.cfg.Container+"/"+blobName, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.DownloadStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"minimal", `{"tenant_id":"t","subscription_id":"s","resource_group":"g"}`, ""},
		{"all", `{"tenant_id":"t","subscription_id":"s","resource_group":"g","location":"l","image_name":"i","hyper_v_generation":"V2"}`, ""},
		{"unknown field", `{"tenant_id":"t","subscription_id":"s","resource_group":"g","region":"x"}`, `unknown field "region"`},
		{"no tenant", `{"subscription_id":"s","resource_group":"g"}`, "tenant_id: required"},
		{"no subscription", `{"tenant_id":"t","resource_group":"g"}`, "subscription_id: required"},
		{"no group", `{"tenant_id":"t","subscription_id":"s"}`, "resource_group: required"},
		{"bad generation", `{"tenant_id":"t","subscription_id":"s","resource_group":"g","hyper_v_generation":"V3"}`, "hyper_v_generation: must be V1 or V2"},
		{"empty", ``, "tenant_id: required"},
		{"not an object", `[1]`, "azure upload options"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOptions(json.RawMessage(tt.in))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("ParseOptions(%s): %v", tt.in, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ParseOptions(%s) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestHyperVGeneration(t *testing.T) {
	tests := []struct {
		requested, bootMode, want string
		wantErr                   bool
	}{
		{"", "legacy", "V1", false},
		{"V1", "legacy", "V1", false},
		{"V2", "legacy", "", true},
		{"", "uefi", "V2", false},
		{"V2", "uefi", "V2", false},
		{"V1", "uefi", "", true},
		{"", "hybrid", "V1", false},
		{"V2", "hybrid", "V2", false},
		{"V1", "hybrid", "V1", false},
		{"", "none", "", true},
	}
	for _, tt := range tests {
		got, err := HyperVGeneration(tt.requested, tt.bootMode)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("HyperVGeneration(%q, %q) = %q, %v; want %q, error %v", tt.requested, tt.bootMode, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCheckArtifactRefusesWrongImages(t *testing.T) {
	dir := t.TempDir()
	good := makeVHD(t, dir, 2, nil, "hybrid")
	if err := checkArtifact(good); err != nil {
		t.Fatalf("good VHD refused: %v", err)
	}
	qcow := good
	qcow.ImageType = "qcow2"
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	notVHD := good
	notVHD.Path = raw
	odd := filepath.Join(dir, "odd.vhd")
	if err := os.WriteFile(odd, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	oddSize := good
	oddSize.Path = odd
	dyn := filepath.Join(dir, "dyn.vhd")
	b := make([]byte, 1<<20)
	ft := vhdFooter(1 << 20)
	binary.BigEndian.PutUint32(ft[60:], 3)
	b = append(b, ft...)
	if err := os.WriteFile(dyn, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dynamic := good
	dynamic.Path = dyn
	for name, tt := range map[string]struct {
		a    upload.Artifact
		want string
	}{
		"qcow2":       {qcow, `image type "qcow2" cannot be uploaded to azure`},
		"not a VHD":   {notVHD, "is not a VHD"},
		"unaligned":   {oddSize, "multiple of 512 bytes"},
		"dynamic VHD": {dynamic, "only fixed VHDs"},
	} {
		t.Run(name, func(t *testing.T) {
			err := checkArtifact(tt.a)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("checkArtifact = %v, want error containing %q", err, tt.want)
			}
		})
	}
	// Upload refuses before any network I/O.
	_, err := New(Config{}).Upload(context.Background(), qcow, json.RawMessage(`{"tenant_id":"t","subscription_id":"s","resource_group":"g"}`), nil)
	if err == nil || !strings.Contains(err.Error(), "cannot be uploaded to azure") {
		t.Fatalf("Upload(qcow2) = %v", err)
	}
}

func TestUploadEndToEnd(t *testing.T) {
	e := setup(t)
	a := makeVHD(t, t.TempDir(), 64, []int64{0, 1, 9, 40, 63}, "uefi")
	u := New(e.cfg)
	u.newAccountName = func() string { return "ibkibtest" + hex.EncodeToString(randBytes(4)) }
	var last atomic.Int64
	res, err := u.Upload(context.Background(), a, e.options(map[string]any{"image_name": "debian-12-kib"}), func(sent, total int64) {
		if total != a.Size {
			t.Errorf("progress total %d, want %d", total, a.Size)
		}
		last.Store(sent)
	})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	want := upload.Result{Type: "azure", Options: map[string]any{"image_name": "debian-12-kib"}}
	if res.Type != want.Type || res.Options["image_name"] != "debian-12-kib" || len(res.Options) != 1 {
		t.Fatalf("result %+v, want %+v", res, want)
	}
	if last.Load() != a.Size {
		t.Errorf("progress ended at %d of %d", last.Load(), a.Size)
	}
	if got := blobSHA256(t, e, "debian-12-kib.vhd"); got != a.SHA256 {
		t.Fatalf("blob sha256 %s, image sha256 %s", got, a.SHA256)
	}
	// MiB 0 and 1 lie in range 0, MiB 9, 40 and 63 in ranges 2, 10 and
	// 15, and the footer is range 16: the other 12 ranges are holes.
	if n := e.ct.putPages.Load(); n != 5 {
		t.Errorf("%d Put Page requests, want 5 (one per range with data)", n)
	}
	accts := e.arm.Accounts("kib-rg")
	if len(accts) != 1 {
		t.Fatalf("storage accounts %v, want one created", accts)
	}
	for _, tags := range accts {
		if tags["imageBuilderStorageAccount"] != "location=westeurope" {
			t.Errorf("new account tags %v", tags)
		}
	}
	im := e.arm.Image("kib-rg", "debian-12-kib")
	if im == nil {
		t.Fatal("no image created")
	}
	if im.HyperVGeneration != "V2" || im.Location != "westeurope" || im.OSType != "Linux" || im.OSState != "Generalized" ||
		im.BlobURI != e.blob+"/"+e.cfg.Container+"/debian-12-kib.vhd" {
		t.Errorf("image %+v", im)
	}

	// A second upload reuses the tagged account and defaults the image name.
	b := makeVHD(t, t.TempDir(), 4, []int64{0}, "hybrid")
	res, err = u.Upload(context.Background(), b, e.options(map[string]any{"location": "westeurope"}), nil)
	if err != nil {
		t.Fatalf("second Upload: %v", err)
	}
	name, _ := res.Options["image_name"].(string)
	if !strings.HasPrefix(name, "kib-") {
		t.Errorf("default image name %q", name)
	}
	if got := len(e.arm.Accounts("kib-rg")); got != 1 {
		t.Errorf("%d storage accounts after the second upload, want 1", got)
	}
	if im := e.arm.Image("kib-rg", name); im == nil || im.HyperVGeneration != "V1" {
		t.Errorf("hybrid image %+v, want hyper-V generation V1", im)
	}
	if e.arm.Requests["GET resourcegroup"] != 1 {
		t.Errorf("resource group read %d times; the second upload names its location", e.arm.Requests["GET resourcegroup"])
	}
}

func TestUploadResumesAfterCut(t *testing.T) {
	e := setup(t)
	e.cfg.StorageAccount = "devstoreaccount1"
	e.arm.AddAccount("kib-rg", "devstoreaccount1", "westeurope", nil)
	var data []int64
	for m := int64(0); m < 96; m += 2 {
		data = append(data, m)
	}
	a := makeVHD(t, t.TempDir(), 96, data, "hybrid")
	opts := e.options(map[string]any{"image_name": "cut"})
	u := New(e.cfg)
	total := (a.Size + RangeSize - 1) / RangeSize // every range holds data
	for try := range 3 {
		// Cut somewhere in the second half, so that some ranges are written.
		cut := a.Size/2 + rand.Int64N(a.Size/2)
		ctx, cancel := context.WithCancel(context.Background())
		before := e.ct.putPages.Load()
		_, err := u.Upload(ctx, a, opts, func(sent, total int64) {
			if sent >= cut {
				cancel()
			}
		})
		cancel()
		if err == nil {
			t.Logf("try %d: cut at %d came after the last range", try, cut)
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("try %d: cut upload: %v", try, err)
		}
		t.Logf("try %d: cut at byte %d of %d after %d more ranges", try, cut, a.Size, e.ct.putPages.Load()-before)
	}
	earlier := e.ct.putPages.Load()
	if earlier == 0 {
		t.Fatal("the cut uploads wrote no range")
	}
	if _, err := u.Upload(context.Background(), a, opts, nil); err != nil {
		t.Fatalf("resumed Upload: %v", err)
	}
	if last := e.ct.putPages.Load() - earlier; last > total-min(earlier, total) {
		t.Errorf("the last upload sent %d of %d ranges after %d were written: it did not resume", last, total, earlier)
	}
	if got := blobSHA256(t, e, "cut.vhd"); got != a.SHA256 {
		t.Fatalf("blob sha256 %s, image sha256 %s", got, a.SHA256)
	}
}

func TestBadCredentials(t *testing.T) {
	e := setup(t)
	e.cfg.ClientSecret = "wrong"
	a := makeVHD(t, t.TempDir(), 2, nil, "hybrid")
	_, err := New(e.cfg).Upload(context.Background(), a, e.options(nil), nil)
	if err == nil {
		t.Fatal("upload with a wrong client secret succeeded")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !strings.Contains(msg, "AADSTS7000215: Invalid client secret provided") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q, want Entra ID's message on one line", msg)
	}
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("error %v is not an *azure.Error with HTTP 401", err)
	}
}

func TestCloudErrors(t *testing.T) {
	e := setup(t)
	e.arm.AddAccount("kib-rg", "devstoreaccount1", "westeurope", map[string]string{"imageBuilderStorageAccount": "location=westeurope"})
	a := makeVHD(t, t.TempDir(), 2, []int64{0}, "hybrid")
	u := New(e.cfg)

	_, err := u.Upload(context.Background(), a, json.RawMessage(`{"tenant_id":"`+e.arm.Tenant+`","subscription_id":"`+e.arm.Subscription+`","resource_group":"nope"}`), nil)
	if err == nil || !strings.Contains(err.Error(), "ResourceGroupNotFound: Resource group 'nope' could not be found. (HTTP 404)") {
		t.Fatalf("unknown resource group: %v", err)
	}

	e.arm.ImageFault = &armtest.Fault{Code: "InvalidParameter", Message: "The specified source blob is not a valid VHD."}
	_, err = u.Upload(context.Background(), a, e.options(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "The specified source blob is not a valid VHD.") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("failed image operation: %v", err)
	}
	var ae *Error
	if !errors.As(err, &ae) {
		var re *azcore.ResponseError
		t.Fatalf("error %v (%T) is not an *azure.Error (ResponseError: %v)", err, err, errors.As(err, &re))
	}

	e.arm.ImageFault = &armtest.Fault{Status: http.StatusConflict, Code: "Conflict", Message: "An image with this name already exists."}
	_, err = u.Upload(context.Background(), a, e.options(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "Conflict: An image with this name already exists. (HTTP 409)") {
		t.Fatalf("refused image: %v", err)
	}
}
