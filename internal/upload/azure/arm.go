package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/storage/armstorage"
)

// accountTag marks the storage account the uploads of one location use,
// as composer tags it: imageBuilderStorageAccount = location=<location>.
const accountTag = "imageBuilderStorageAccount"

// armClients are the Resource Manager clients of one subscription.
type armClients struct {
	groups   *armresources.ResourceGroupsClient
	accounts *armstorage.AccountsClient
	images   *armcompute.ImagesClient
}

func (u *Uploader) newARM(subscription string, cred azcore.TokenCredential) (*armClients, error) {
	o := u.armOptions()
	groups, err := armresources.NewResourceGroupsClient(subscription, cred, o)
	if err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	accounts, err := armstorage.NewAccountsClient(subscription, cred, o)
	if err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	images, err := armcompute.NewImagesClient(subscription, cred, o)
	if err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	return &armClients{groups, accounts, images}, nil
}

func (m *armClients) resourceGroupLocation(ctx context.Context, group string) (string, error) {
	rg, err := m.groups.Get(ctx, group, nil)
	if err != nil {
		return "", err
	}
	if rg.Location == nil || *rg.Location == "" {
		return "", fmt.Errorf("resource group %q has no location", group)
	}
	return *rg.Location, nil
}

// account is a storage account: its name, key and blob endpoint.
type account struct {
	name, key, blobEndpoint string
}

// storageAccount returns the named account, or the resource group's account
// tagged for location, creating one when there is none.
func (m *armClients) storageAccount(ctx context.Context, group, location, name string, newName func() string, every time.Duration) (account, error) {
	var found *armstorage.Account
	want := "location=" + location
	pager := m.accounts.NewListByResourceGroupPager(group, nil)
	for found == nil && pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return account{}, fmt.Errorf("listing the storage accounts of resource group %q: %w", group, err)
		}
		for _, a := range page.Value {
			if a == nil || a.Name == nil {
				continue
			}
			if name != "" && *a.Name == name || name == "" && a.Tags[accountTag] != nil && *a.Tags[accountTag] == want {
				found = a
				break
			}
		}
	}
	if found == nil && name != "" {
		return account{}, fmt.Errorf("storage account %q not found in resource group %q", name, group)
	}
	if found == nil {
		name = newName()
		poller, err := m.accounts.BeginCreate(ctx, group, name, armstorage.AccountCreateParameters{
			Kind:     to.Ptr(armstorage.KindStorageV2),
			Location: &location,
			SKU:      &armstorage.SKU{Name: to.Ptr(armstorage.SKUNameStandardLRS)},
			Tags:     map[string]*string{accountTag: &want},
			Properties: &armstorage.AccountPropertiesCreateParameters{
				AllowBlobPublicAccess: to.Ptr(false),
				MinimumTLSVersion:     to.Ptr(armstorage.MinimumTLSVersionTLS12),
			},
		}, nil)
		if err != nil {
			return account{}, fmt.Errorf("creating storage account %q: %w", name, err)
		}
		res, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: every})
		if err != nil {
			return account{}, fmt.Errorf("creating storage account %q: %w", name, err)
		}
		found = &res.Account
	}
	a := account{name: *found.Name}
	if found.Properties != nil && found.Properties.PrimaryEndpoints != nil && found.Properties.PrimaryEndpoints.Blob != nil {
		a.blobEndpoint = *found.Properties.PrimaryEndpoints.Blob
	} else {
		a.blobEndpoint = "https://" + a.name + ".blob.core.windows.net/"
	}
	keys, err := m.accounts.ListKeys(ctx, group, a.name, nil)
	if err != nil {
		return account{}, fmt.Errorf("retrieving the keys of storage account %q: %w", a.name, err)
	}
	for _, k := range keys.Keys {
		if k != nil && k.Value != nil && *k.Value != "" {
			a.key = *k.Value
			break
		}
	}
	if a.key == "" {
		return account{}, fmt.Errorf("storage account %q has no keys", a.name)
	}
	return a, nil
}

// createImage creates the managed image from the uploaded blob and waits
// for the operation.
func (m *armClients) createImage(ctx context.Context, group, name, location, blobURL, generation string, every time.Duration) error {
	poller, err := m.images.BeginCreateOrUpdate(ctx, group, name, armcompute.Image{
		Location: &location,
		Properties: &armcompute.ImageProperties{
			HyperVGeneration: to.Ptr(armcompute.HyperVGenerationTypes(generation)),
			StorageProfile: &armcompute.ImageStorageProfile{
				OSDisk: &armcompute.ImageOSDisk{
					OSType:  to.Ptr(armcompute.OperatingSystemTypesLinux),
					OSState: to.Ptr(armcompute.OperatingSystemStateTypesGeneralized),
					BlobURI: &blobURL,
				},
			},
		},
	}, nil)
	if err != nil {
		return err
	}
	_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: every})
	return err
}

// cloudError turns the SDK's multi-line errors into the cloud's own words:
// the ARM or Storage error code and message, or Entra ID's error
// description, with the HTTP status.
func cloudError(err error) error {
	if err == nil {
		return nil
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if re.RawResponse != nil && re.RawResponse.Body != nil {
			if body, rerr := io.ReadAll(re.RawResponse.Body); rerr == nil {
				if m := armMessage(body); m != "" {
					msg = m
				}
			}
		}
		if msg == "" {
			msg = "request failed"
		}
		return &Error{Status: re.StatusCode, Code: re.ErrorCode, Message: msg, err: err}
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		msg := "authentication failed"
		status := 0
		if af.RawResponse != nil {
			status = af.RawResponse.StatusCode
			if af.RawResponse.Body != nil {
				if body, rerr := io.ReadAll(af.RawResponse.Body); rerr == nil {
					var e struct {
						Error       string `json:"error"`
						Description string `json:"error_description"`
					}
					if json.Unmarshal(body, &e) == nil && e.Description != "" {
						msg = e.Error + ": " + firstLine(e.Description)
					}
				}
			}
		}
		if msg == "authentication failed" {
			// The body was read into the message: take Entra ID's line.
			if m := aadstsRE.FindString(err.Error()); m != "" {
				msg = strings.TrimSpace(m)
			}
		}
		return &Error{Status: status, Code: "AuthenticationFailed", Message: msg, err: err}
	}
	return err
}

// aadstsRE finds Entra ID's error (AADSTSnnnn: text) in a message.
var aadstsRE = regexp.MustCompile(`AADSTS\d+:[^"\r\n]*`)

func armMessage(body []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error.Message != "" {
			return e.Error.Message
		}
		if e.Message != "" {
			return e.Message
		}
	}
	// Blob storage answers in XML: <Error><Code/><Message/></Error>.
	s := string(body)
	if i := strings.Index(s, "<Message>"); i >= 0 {
		if j := strings.Index(s[i:], "</Message>"); j >= 0 {
			return firstLine(s[i+len("<Message>") : i+j])
		}
	}
	return ""
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// Error is an error answered by Azure: the HTTP status, the service's
// error code and its message.
type Error struct {
	Status  int
	Code    string
	Message string
	err     error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// Unwrap returns the SDK's error.
func (e *Error) Unwrap() error { return e.err }
