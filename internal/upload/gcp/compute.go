package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"cloud.google.com/go/auth"
	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// imageUserRole lets an account use (boot from) the image.
const imageUserRole = "roles/compute.imageUser"

type computeClients struct {
	project string
	images  *compute.ImagesClient
	ops     *compute.GlobalOperationsClient
}

func (u *Uploader) newCompute(ctx context.Context, authOpt option.ClientOption, project string) (*computeClients, error) {
	opts := []option.ClientOption{authOpt}
	if u.cfg.ComputeEndpoint != "" {
		opts = append(opts, option.WithEndpoint(u.cfg.ComputeEndpoint))
	}
	images, err := compute.NewImagesRESTClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcp: compute images client: %w", err)
	}
	ops, err := compute.NewGlobalOperationsRESTClient(ctx, opts...)
	if err != nil {
		images.Close()
		return nil, fmt.Errorf("gcp: compute operations client: %w", err)
	}
	return &computeClients{project, images, ops}, nil
}

func (c *computeClients) close() {
	c.images.Close()
	c.ops.Close()
}

// insertImage creates the image from the staging object and waits for the
// global operation to end.
func (c *computeClients) insertImage(ctx context.Context, name, bucket, object, region string, features []string) error {
	var gf []*computepb.GuestOsFeature
	for _, f := range features {
		gf = append(gf, &computepb.GuestOsFeature{Type: &f})
	}
	source := "https://storage.googleapis.com/" + bucket + "/" + object
	tarType := computepb.RawDisk_TAR.String()
	op, err := c.images.Insert(ctx, &computepb.InsertImageRequest{
		Project: c.project,
		ImageResource: &computepb.Image{
			Name:             &name,
			StorageLocations: []string{region},
			GuestOsFeatures:  gf,
			RawDisk:          &computepb.RawDisk{ContainerType: &tarType, Source: &source},
		},
	})
	if err != nil {
		return err
	}
	opName := op.Proto().GetName()
	res := op.Proto()
	for res.GetStatus() != computepb.Operation_DONE {
		// operations.wait answers when the operation is done or after
		// about two minutes, whichever is first.
		res, err = c.ops.Wait(ctx, &computepb.WaitGlobalOperationRequest{Project: c.project, Operation: opName})
		if err != nil {
			return fmt.Errorf("waiting for operation %s: %w", opName, err)
		}
	}
	if oe := res.GetError(); oe != nil && len(oe.GetErrors()) > 0 {
		var msgs []string
		for _, e := range oe.GetErrors() {
			msgs = append(msgs, e.GetCode()+": "+e.GetMessage())
		}
		return &Error{Status: int(res.GetHttpErrorStatusCode()), Message: strings.Join(msgs, "; ")}
	}
	return nil
}

// shareImage grants roles/compute.imageUser on the image to the accounts,
// replacing the image's policy as composer does.
func (c *computeClients) shareImage(ctx context.Context, name string, members []string) error {
	policy, err := c.images.GetIamPolicy(ctx, &computepb.GetIamPolicyImageRequest{Project: c.project, Resource: name})
	if err != nil {
		return err
	}
	role := imageUserRole
	_, err = c.images.SetIamPolicy(ctx, &computepb.SetIamPolicyImageRequest{
		Project:  c.project,
		Resource: name,
		GlobalSetPolicyRequestResource: &computepb.GlobalSetPolicyRequest{
			Policy: &computepb.Policy{
				Bindings: []*computepb.Binding{{Role: &role, Members: members}},
				Etag:     policy.Etag,
			},
		},
	})
	return err
}

// Error is an error answered by Google Cloud: the HTTP status and the
// service's message.
type Error struct {
	Status  int
	Message string
	err     error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return e.Message
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// Unwrap returns the client library's error.
func (e *Error) Unwrap() error { return e.err }

// cloudError keeps the service's message and status of a Google API error
// and drops the client library's decoration.
func cloudError(err error) error {
	if err == nil {
		return nil
	}
	var ge *Error
	if errors.As(err, &ge) {
		return err
	}
	var gapi *googleapi.Error
	if errors.As(err, &gapi) && gapi.Message != "" {
		return &Error{Status: gapi.Code, Message: firstLine(gapi.Message), err: err}
	}
	var authErr *auth.Error
	if errors.As(err, &authErr) {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		status := 0
		if authErr.Response != nil {
			status = authErr.Response.StatusCode
		}
		if json.Unmarshal(authErr.Body, &e) == nil && e.Error != "" {
			msg := e.Error
			if e.Description != "" {
				msg += ": " + firstLine(e.Description)
			}
			return &Error{Status: status, Message: "token: " + msg, err: err}
		}
	}
	var ae *apierror.APIError
	if errors.As(err, &ae) && ae.HTTPCode() > 0 {
		if gapi, ok := ae.Unwrap().(*googleapi.Error); ok && gapi.Message != "" {
			return &Error{Status: gapi.Code, Message: firstLine(gapi.Message), err: err}
		}
	}
	return err
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
