package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// DefaultEnrollTimeout bounds an enrollment from dial to response.
const DefaultEnrollTimeout = 30 * time.Second

// EnrollConfig says where and how to enroll.
type EnrollConfig struct {
	// CA is the CA's multiaddr, ending in /p2p/ and its peer ID.
	CA ma.Multiaddr
	// Token is the one-time token from the CA operator; empty for a CA in
	// open mode.
	Token string
	// Timeout bounds the whole exchange. Zero means DefaultEnrollTimeout.
	Timeout time.Duration
}

// ErrRejected wraps the CA's reason when it rejects an enrollment.
var ErrRejected = errors.New("the CA rejected the enrollment")

// Enroll obtains a certificate for the node's current key version from
// the CA at cfg.CA and stores it with the CA certificate, which becomes
// the node's trust anchor. The CA certificate must name the peer ID that
// cfg.CA ends in, and on a node that enrolled before it must be the CA
// certificate already trusted. Nothing is stored unless every check
// passes.
func Enroll(ctx context.Context, st *store.Store, cfg EnrollConfig) (*Identity, error) {
	id, err := LoadIdentity(st)
	if err != nil {
		return nil, err
	}
	ca, err := peer.AddrInfoFromP2pAddr(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("invalid CA address %q: it must end in /p2p/<peer ID>: %w", cfg.CA, err)
	}
	csr, err := createCSR(id)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultEnrollTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	h, err := NewHost(HostConfig{Key: id.PeerKey})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	req := protocol.EnrollRequest{CSR: csr, Token: cfg.Token}
	cert, caCert, err := requestCertificate(ctx, h, *ca, req)
	if err != nil {
		return nil, err
	}
	if err := checkIssued(id, ca.ID, cert, caCert); err != nil {
		return nil, fmt.Errorf("the CA's response failed verification: %w", err)
	}
	if err := saveEnrollment(st, id, cert, caCert, cfg.CA); err != nil {
		return nil, err
	}
	id.Cert, id.CACert = cert, caCert
	return id, nil
}

func createCSR(id *Identity) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.User},
		URIs:    id.Protocol().URIs(),
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, id.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return der, nil
}

func requestCertificate(ctx context.Context, h host.Host, ca peer.AddrInfo, req protocol.EnrollRequest) (cert, caCert *x509.Certificate, err error) {
	if err := h.Connect(ctx, ca); err != nil {
		return nil, nil, fmt.Errorf("cannot reach the CA %s at %v: %w\ncheck the address and that 'skm ca serve' runs there", ca.ID, ca.Addrs, err)
	}
	s, err := h.NewStream(ctx, ca.ID, protocol.EnrollID)
	if err != nil {
		return nil, nil, fmt.Errorf("open enrollment stream to %s: %w", ca.ID, err)
	}
	defer s.Close()
	if deadline, ok := ctx.Deadline(); ok {
		s.SetDeadline(deadline)
	}
	if err := protocol.WriteJSON(s, req); err != nil {
		s.Reset()
		return nil, nil, fmt.Errorf("send enrollment request: %w", err)
	}
	s.CloseWrite()
	frame, err := protocol.ReadFrame(s, protocol.MaxEnrollResponseSize)
	if err != nil {
		s.Reset()
		return nil, nil, fmt.Errorf("read enrollment response: %w", err)
	}
	cert, caCert, err = protocol.DecodeEnrollResponse(frame)
	var rejected *protocol.Error
	if errors.As(err, &rejected) {
		return nil, nil, fmt.Errorf("%w: %s", ErrRejected, rejected.Message)
	}
	return cert, caCert, err
}

// checkIssued verifies that caCert is a CA certificate for the host we
// dialed and that cert chains to it and certifies exactly our identity.
func checkIssued(id *Identity, caPeer peer.ID, cert, caCert *x509.Certificate) error {
	if !caCert.IsCA || caCert.CheckSignatureFrom(caCert) != nil {
		return errors.New("CA certificate is not a self-signed CA certificate")
	}
	named, err := protocol.CertPeerID(caCert)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	if named != caPeer {
		return fmt.Errorf("CA certificate names peer %s, but we dialed %s", named, caPeer)
	}
	if id.CACert != nil && !bytes.Equal(id.CACert.Raw, caCert.Raw) {
		return fmt.Errorf("CA certificate %s differs from the trusted one %s",
			protocol.Fingerprint(caCert), protocol.Fingerprint(id.CACert))
	}
	if err := VerifyChain(cert, caCert, time.Now()); err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(id.SigningKey.Public()) {
		return errors.New("certificate is for another key")
	}
	got, err := protocol.CertIdentity(cert)
	if err != nil {
		return err
	}
	if got != id.Protocol() {
		return fmt.Errorf("certificate binds %+v, want %+v", got, id.Protocol())
	}
	return nil
}

// VerifyChain checks that cert is signed by caCert, is valid at now and
// is meant for skm's mutual authentication.
func VerifyChain(cert, caCert *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("verify certificate: %w", err)
	}
	return nil
}

func saveEnrollment(st *store.Store, id *Identity, cert, caCert *x509.Certificate, caAddr ma.Multiaddr) error {
	return st.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Certs, certCA, caCert.Raw); err != nil {
			return err
		}
		if err := tx.Put(store.Certs, leafCertName(id.KeyVersion), cert.Raw); err != nil {
			return err
		}
		return tx.Put(store.Meta, metaCAAddr, caAddr.Bytes())
	})
}
