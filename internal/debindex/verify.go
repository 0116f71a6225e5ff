package debindex

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"

	//lint:ignore SA1019 frozen but maintained for security fixes; it verifies the RSA signatures Debian's archive keys make, and keys it cannot read (ed25519) are skipped, not trusted
	"golang.org/x/crypto/openpgp"
	//lint:ignore SA1019 see above
	"golang.org/x/crypto/openpgp/armor"
	//lint:ignore SA1019 see above
	"golang.org/x/crypto/openpgp/clearsign"
	//lint:ignore SA1019 see above
	pgperrors "golang.org/x/crypto/openpgp/errors"
	//lint:ignore SA1019 see above
	"golang.org/x/crypto/openpgp/packet"
)

// Keyring is the public keys signatures are checked against.
type Keyring struct{ el openpgp.EntityList }

// ReadKeyring reads an OpenPGP keyring, binary (a .gpg file) or armored
// (.asc). Keys of algorithms the verifier does not know are left out.
func ReadKeyring(data []byte) (*Keyring, error) {
	var el openpgp.EntityList
	var err error
	if bytes.Contains(data, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil && len(el) == 0 {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if len(el) == 0 {
		return nil, errors.New("keyring: no usable keys")
	}
	return &Keyring{el}, nil
}

// VerifyInRelease checks an InRelease file (a clear-signed Release) against
// keyring and returns the signed text. One good signature by a signing key
// of the keyring is enough, as for apt; signatures by other keys or of
// algorithms the verifier does not read are passed over.
func VerifyInRelease(keyring *Keyring, inrelease []byte) ([]byte, error) {
	b, _ := clearsign.Decode(inrelease)
	if b == nil {
		return nil, errors.New("InRelease: not a clear-signed message")
	}
	if err := verifySigs(keyring, b.Bytes, b.ArmoredSignature.Body); err != nil {
		return nil, fmt.Errorf("InRelease: %w", err)
	}
	return b.Plaintext, nil
}

// PlainInRelease returns the text of an InRelease file without checking
// its signature, for repositories trusted without one.
func PlainInRelease(inrelease []byte) ([]byte, error) {
	b, _ := clearsign.Decode(inrelease)
	if b == nil {
		return nil, errors.New("InRelease: not a clear-signed message")
	}
	return b.Plaintext, nil
}

// VerifyDetached checks a Release file against its detached, armored
// signature (Release.gpg).
func VerifyDetached(keyring *Keyring, signed, signature []byte) error {
	blk, err := armor.Decode(bytes.NewReader(signature))
	if err != nil {
		return fmt.Errorf("detached signature Release.gpg: %w", err)
	}
	if err := verifySigs(keyring, signed, blk.Body); err != nil {
		return fmt.Errorf("detached signature Release.gpg: %w", err)
	}
	return nil
}

func verifySigs(keyring *Keyring, signed []byte, sigs io.Reader) error {
	var tried []string
	for {
		p, err := packet.Read(sigs)
		if err == io.EOF {
			break
		}
		if err != nil {
			var ue pgperrors.UnsupportedError
			var ut pgperrors.UnknownPacketTypeError
			if errors.As(err, &ue) || errors.As(err, &ut) {
				continue // packet.Read has consumed it
			}
			return fmt.Errorf("signature: %w", err)
		}
		sig, ok := p.(*packet.Signature)
		if !ok || sig.IssuerKeyId == nil {
			continue
		}
		tried = append(tried, fmt.Sprintf("%016X", *sig.IssuerKeyId))
		for _, k := range keyring.el.KeysByIdUsage(*sig.IssuerKeyId, packet.KeyFlagSign) {
			if !sig.Hash.Available() || sig.Hash == crypto.SHA1 || sig.Hash == crypto.MD5 {
				continue
			}
			h := sig.Hash.New()
			h.Write(signed)
			if k.PublicKey.VerifySignature(h, sig) == nil {
				return nil
			}
		}
	}
	if len(tried) == 0 {
		return errors.New("no signature the verifier can read")
	}
	return fmt.Errorf("no good signature by a key of the keyring (signed by %s)", strings.Join(tried, ", "))
}
