package azure

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// blobClient makes sure the container exists and returns the page blob's
// client and URL.
func (u *Uploader) blobClient(ctx context.Context, a account, blobName string) (pageBlob, string, error) {
	// An emulator's endpoint is path-style (http://host:port/<account>/):
	// the account in the path is the one the shared key signs for.
	keyName := a.name
	if p, err := sas.ParseURL(a.blobEndpoint); err == nil && p.IPEndpointStyleInfo.AccountName != "" {
		keyName = p.IPEndpointStyleInfo.AccountName
	}
	cred, err := service.NewSharedKeyCredential(keyName, a.key)
	if err != nil {
		return nil, "", fmt.Errorf("storage account %q key: %w", a.name, err)
	}
	co := azcore.ClientOptions{}
	if u.cfg.HTTPClient != nil {
		co.Transport = u.cfg.HTTPClient
	}
	base := strings.TrimSuffix(a.blobEndpoint, "/") + "/" + url.PathEscape(u.cfg.Container)
	cc, err := container.NewClientWithSharedKeyCredential(base, cred, &container.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, "", err
	}
	if _, err := cc.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil, "", fmt.Errorf("creating container %q: %w", u.cfg.Container, err)
	}
	blobURL := base + "/" + url.PathEscape(blobName)
	pc, err := pageblob.NewClientWithSharedKeyCredential(blobURL, cred, &pageblob.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, "", err
	}
	return pbClient{pc}, blobURL, nil
}
