// Package azure uploads a fixed VHD to Azure as composer's
// org.osbuild.azure.image target does: it finds (or creates) the resource
// group's image-builder storage account, uploads the VHD as a page blob into
// its "imagebuilder" container, and creates a managed image from the blob.
// The result is {"image_name": ...}, as the Cloud API's AzureUploadStatus.
package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/uuid"

	"github.com/kib-project/kib/internal/upload"
)

// Config holds what the service or the CLI knows beyond the per-request
// upload_options: credentials and endpoints. The zero value uses Azure's
// public cloud and azidentity's default credential chain (environment,
// workload identity, managed identity, Azure CLI).
type Config struct {
	// ClientID and ClientSecret, when both are set, authenticate as a
	// service principal of the request's tenant_id (composer's worker
	// credentials). Otherwise the default credential chain is used.
	ClientID     string
	ClientSecret string
	// Credential overrides both of the above.
	Credential azcore.TokenCredential
	// ResourceManager is the ARM endpoint; empty means
	// https://management.azure.com/.
	ResourceManager string
	// AuthorityHost is the Microsoft Entra ID endpoint; empty means
	// https://login.microsoftonline.com/.
	AuthorityHost string
	// StorageAccount names the account that receives the blob; empty means
	// the resource group's account tagged imageBuilderStorageAccount =
	// location=<location>, created if missing (as composer does).
	StorageAccount string
	// Container is the blob container; empty means "imagebuilder".
	Container string
	// Parallel is the number of 4 MiB ranges in flight; 0 means 4.
	Parallel int
	// HTTPClient carries every request (tests trust their TLS servers with
	// it); nil means the SDK's default.
	HTTPClient *http.Client
	// PollFrequency is how often long-running ARM operations are polled;
	// 0 means 10s.
	PollFrequency time.Duration
	Logger        *slog.Logger
}

// Uploader uploads VHD images to Azure. It is safe for concurrent use.
type Uploader struct {
	cfg Config
	// newAccountName makes the name of a storage account to create.
	newAccountName func() string
}

var _ upload.Uploader = (*Uploader)(nil)

// New returns an Uploader with cfg; it does no I/O.
func New(cfg Config) *Uploader {
	if cfg.Container == "" {
		cfg.Container = "imagebuilder"
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 4
	}
	if cfg.PollFrequency <= 0 {
		cfg.PollFrequency = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Uploader{cfg: cfg, newAccountName: randomAccountName}
}

// Options is the Cloud API's AzureUploadOptions.
type Options struct {
	TenantID         string `json:"tenant_id"`
	SubscriptionID   string `json:"subscription_id"`
	ResourceGroup    string `json:"resource_group"`
	Location         string `json:"location,omitempty"`
	ImageName        string `json:"image_name,omitempty"`
	HyperVGeneration string `json:"hyper_v_generation,omitempty"`
}

// ParseOptions decodes and checks AzureUploadOptions: unknown fields,
// missing required fields and a hyper_v_generation other than V1 or V2
// are errors naming the field.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, fmt.Errorf("azure upload options: %w", err)
	}
	for _, f := range []struct{ name, v string }{
		{"tenant_id", o.TenantID}, {"subscription_id", o.SubscriptionID}, {"resource_group", o.ResourceGroup},
	} {
		if strings.TrimSpace(f.v) == "" {
			return o, fmt.Errorf("azure upload options: %s: required", f.name)
		}
	}
	switch o.HyperVGeneration {
	case "", "V1", "V2":
	default:
		return o, fmt.Errorf("azure upload options: hyper_v_generation: must be V1 or V2, not %q", o.HyperVGeneration)
	}
	return o, nil
}

// HyperVGeneration chooses the image's generation from the request and the
// image's boot mode. Composer passes the request's value through and
// defaults to V1; kib does the same for legacy and hybrid images (V1 boots
// them with BIOS), defaults to V2 for UEFI-only images (V1 cannot boot
// them), and refuses a generation the image cannot boot with.
func HyperVGeneration(requested, bootMode string) (string, error) {
	switch bootMode {
	case "uefi":
		if requested == "V1" {
			return "", fmt.Errorf("azure upload options: hyper_v_generation: V1 boots with BIOS, but the image boots with UEFI only; use V2")
		}
		return "V2", nil
	case "legacy":
		if requested == "V2" {
			return "", fmt.Errorf("azure upload options: hyper_v_generation: V2 boots with UEFI, but the image boots with BIOS only; use V1")
		}
		return "V1", nil
	case "hybrid":
		if requested == "" {
			return "V1", nil
		}
		return requested, nil
	default:
		return "", fmt.Errorf("azure: image boot mode %q is not bootable on Azure (want legacy, uefi or hybrid)", bootMode)
	}
}

// Upload uploads a (a fixed VHD) with the AzureUploadOptions in options.
func (u *Uploader) Upload(ctx context.Context, a upload.Artifact, options json.RawMessage, progress upload.Progress) (upload.Result, error) {
	o, err := ParseOptions(options)
	if err != nil {
		return upload.Result{}, err
	}
	if err := checkArtifact(a); err != nil {
		return upload.Result{}, err
	}
	gen, err := HyperVGeneration(o.HyperVGeneration, a.BootMode)
	if err != nil {
		return upload.Result{}, err
	}
	imageName := o.ImageName
	if imageName == "" {
		imageName = "kib-" + uuid.NewString()
	}
	log := u.cfg.Logger.With("target", upload.TargetAzure, "image_name", imageName)

	cred, err := u.credential(o.TenantID)
	if err != nil {
		return upload.Result{}, err
	}
	m, err := u.newARM(o.SubscriptionID, cred)
	if err != nil {
		return upload.Result{}, err
	}

	location := o.Location
	if location == "" {
		if location, err = m.resourceGroupLocation(ctx, o.ResourceGroup); err != nil {
			return upload.Result{}, fmt.Errorf("azure: retrieving the location of resource group %q: %w", o.ResourceGroup, cloudError(err))
		}
	}
	acct, err := m.storageAccount(ctx, o.ResourceGroup, location, u.cfg.StorageAccount, u.newAccountName, u.cfg.PollFrequency)
	if err != nil {
		return upload.Result{}, fmt.Errorf("azure: storage account: %w", cloudError(err))
	}
	log.Info("azure: uploading the image", "storage_account", acct.name, "container", u.cfg.Container)

	blobName := imageName
	if !strings.HasSuffix(blobName, ".vhd") {
		blobName += ".vhd" // Azure makes images only from blobs named *.vhd
	}
	pb, blobURL, err := u.blobClient(ctx, acct, blobName)
	if err != nil {
		return upload.Result{}, fmt.Errorf("azure: %w", cloudError(err))
	}
	st, err := UploadPageBlob(ctx, pb, a.Path, PageBlobOptions{
		Parallel: u.cfg.Parallel, SHA256: a.SHA256, Progress: progress, Logger: log,
	})
	if err != nil {
		return upload.Result{}, fmt.Errorf("azure: uploading %s to %s: %w", a.Path, blobURL, cloudError(err))
	}
	log.Info("azure: page blob uploaded", "bytes_sent", st.Sent, "bytes_skipped", st.Skipped, "bytes_resumed", st.Resumed, "requests", st.Requests)

	log.Info("azure: registering the image", "location", location, "hyper_v_generation", gen)
	if err := m.createImage(ctx, o.ResourceGroup, imageName, location, blobURL, gen, u.cfg.PollFrequency); err != nil {
		return upload.Result{}, fmt.Errorf("azure: registering image %q: %w", imageName, cloudError(err))
	}
	return upload.Result{Type: upload.TargetAzure, Options: map[string]any{"image_name": imageName}}, nil
}

func (u *Uploader) clientOptions() azcore.ClientOptions {
	c := cloud.AzurePublic
	c.Services = map[cloud.ServiceName]cloud.ServiceConfiguration{
		cloud.ResourceManager: cloud.AzurePublic.Services[cloud.ResourceManager],
	}
	if u.cfg.AuthorityHost != "" {
		c.ActiveDirectoryAuthorityHost = u.cfg.AuthorityHost
	}
	if u.cfg.ResourceManager != "" {
		rm := c.Services[cloud.ResourceManager]
		rm.Endpoint = u.cfg.ResourceManager
		c.Services[cloud.ResourceManager] = rm
	}
	o := azcore.ClientOptions{Cloud: c}
	if u.cfg.HTTPClient != nil {
		o.Transport = u.cfg.HTTPClient
	}
	return o
}

var _ policy.Transporter = (*http.Client)(nil)

func (u *Uploader) credential(tenant string) (azcore.TokenCredential, error) {
	if u.cfg.Credential != nil {
		return u.cfg.Credential, nil
	}
	co := u.clientOptions()
	if u.cfg.ClientID != "" && u.cfg.ClientSecret != "" {
		c, err := azidentity.NewClientSecretCredential(tenant, u.cfg.ClientID, u.cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: u.cfg.AuthorityHost != ""})
		if err != nil {
			return nil, fmt.Errorf("azure: credentials: %w", err)
		}
		return c, nil
	}
	c, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: co, TenantID: tenant})
	if err != nil {
		return nil, fmt.Errorf("azure: credentials: %w", err)
	}
	return c, nil
}

func (u *Uploader) armOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: u.clientOptions()}
}

// randomAccountName makes a storage account name as composer does: "ib"
// and random lower-case letters and digits, 24 characters in all.
func randomAccountName() string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 22)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return "ib" + string(b)
}
