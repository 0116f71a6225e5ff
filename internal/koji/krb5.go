package koji

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// KeytabNegotiator makes SPNEGO tokens for GSSAPILogin from a Kerberos
// principal's keytab, like osbuild-composer's worker and kojid do. It is
// safe for concurrent use.
type KeytabNegotiator struct {
	mu sync.Mutex
	cl *client.Client
}

// NewKeytabNegotiator reads krb5.conf (krb5Conf; /etc/krb5.conf if empty)
// and the keytab of principal ("user@REALM" or "service/host@REALM"). It
// does no network I/O; the first Token call gets a ticket-granting ticket.
func NewKeytabNegotiator(principal, keytabPath, krb5Conf string) (*KeytabNegotiator, error) {
	name, realm, ok := strings.Cut(principal, "@")
	if !ok || name == "" || realm == "" {
		return nil, fmt.Errorf("koji: kerberos principal %q: must be name@REALM", principal)
	}
	if krb5Conf == "" {
		krb5Conf = "/etc/krb5.conf"
	}
	cfg, err := config.Load(krb5Conf)
	if err != nil {
		return nil, fmt.Errorf("koji: kerberos config %s: %w", krb5Conf, err)
	}
	kt, err := keytab.Load(keytabPath)
	if err != nil {
		return nil, fmt.Errorf("koji: keytab %s: %w", keytabPath, err)
	}
	return &KeytabNegotiator{cl: client.NewWithKeytab(name, realm, kt, cfg, client.DisablePAFXFAST(true))}, nil
}

// Token returns a SPNEGO NegTokenInit for service HTTP/host, logging in to
// the KDC first if needed.
func (n *KeytabNegotiator) Token(ctx context.Context, host string) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ok, _ := n.cl.IsConfigured(); !ok {
		return nil, fmt.Errorf("koji: kerberos client is not configured")
	}
	if err := n.cl.AffirmLogin(); err != nil {
		return nil, fmt.Errorf("koji: kerberos login: %w", err)
	}
	tok, err := spnego.SPNEGOClient(n.cl, "HTTP/"+host).InitSecContext()
	if err != nil {
		return nil, fmt.Errorf("koji: SPNEGO token for HTTP/%s: %w", host, err)
	}
	b, err := tok.Marshal()
	if err != nil {
		return nil, fmt.Errorf("koji: SPNEGO token: %w", err)
	}
	return b, nil
}
