package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
)

// memoryCA is a CA that lives only in memory. Its certificates have the
// profile that the ca package issues, so verifying them costs what
// verifying a real node's certificate costs.
type memoryCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
}

func newMemoryCA() (*memoryCA, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "skm bench CA", Organization: []string{"skm"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("sign bench CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &memoryCA{cert: cert, key: key}, nil
}

// identity is the libp2p key of one bench host and the credentials that
// certify it.
type identity struct {
	peerKey p2pcrypto.PrivKey
	peerID  peer.ID
	creds   protocol.Credentials
}

// issue returns a new libp2p key and an skm certificate for user that
// binds it.
func (ca *memoryCA) issue(user string) (*identity, error) {
	peerKey, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	peerID, err := peer.IDFromPrivateKey(peerKey)
	if err != nil {
		return nil, err
	}

	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}

	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: user},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  protocol.Identity{User: user, KeyVersion: 1, PeerID: peerID}.URIs(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign bench certificate for %q: %w", user, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &identity{
		peerKey: peerKey,
		peerID:  peerID,
		creds:   protocol.Credentials{Cert: cert, Key: key},
	}, nil
}

// verifier returns the certificate check that a node runs on a peer in
// the handshake: the chain to the CA, validity now, and the peer ID.
//
// NOTE: this mirrors the unexported Node.verifyPeer in node/session.go,
// except for its revocation lookup, because the bench CA has no CRL. A
// check added there is not measured here until it is added here too.
func verifier(caCert *x509.Certificate, remote peer.ID) func(*x509.Certificate) error {
	return func(cert *x509.Certificate) error {
		if err := node.VerifyChain(cert, caCert, time.Now()); err != nil {
			return err
		}
		id, err := protocol.CertIdentity(cert)
		if err != nil {
			return err
		}
		if id.PeerID != remote {
			return fmt.Errorf("certificate of %q names peer %s, not %s", id.User, id.PeerID, remote)
		}
		return nil
	}
}
