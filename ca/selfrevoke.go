package ca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// HandleRevoke serves one self-revocation stream: a holder of a
// certificate asks, with a signature by the certified key, for that
// certificate's revocation. Register it for [protocol.RevokeID].
func (a *Authority) HandleRevoke(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(enrollTimeout))
	remote := s.Conn().RemotePeer().String()
	resp := a.selfRevoke(s)
	if resp.Error != nil {
		a.cfg.Log.Info("revocation request rejected", "peer", remote, "code", resp.Error.Code, "reason", resp.Error.Message)
	}
	if err := protocol.WriteJSON(s, resp); err != nil {
		s.Reset()
	}
}

func (a *Authority) selfRevoke(s network.Stream) protocol.RevokeResponse {
	fail := func(code protocol.Code, format string, args ...any) protocol.RevokeResponse {
		return protocol.RevokeResponse{Error: protocol.Errorf(code, format, args...)}
	}
	frame, err := protocol.ReadFrame(s, protocol.MaxRevokeRequestSize)
	if err != nil {
		return fail(protocol.CodeBadRequest, "read request: %v", err)
	}
	req, err := protocol.DecodeRevokeRequest(frame)
	if err != nil {
		return fail(protocol.CodeBadRequest, "%v", err)
	}
	cert, err := x509.ParseCertificate(req.Certificate)
	if err != nil {
		return fail(protocol.CodeBadRequest, "parse certificate: %v", err)
	}
	if err := checkReason(req.Reason); err != nil {
		return fail(protocol.CodeBadRequest, "%v", err)
	}
	serial := SerialString(cert.SerialNumber)
	issued, err := a.issuedCert(serial)
	if err != nil || !bytes.Equal(issued.Raw, cert.Raw) {
		return fail(protocol.CodeNotFound, "this CA did not issue certificate %s", serial)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !ed25519.Verify(pub, protocol.RevokeMessage(cert.Raw, req.Reason), req.Signature) {
		return fail(protocol.CodeBadRequest, "the signature does not verify with the key of certificate %s", serial)
	}
	crl, err := a.Revoke(serial, req.Reason)
	if errors.Is(err, ErrAlreadyRevoked) {
		return fail(protocol.CodeKeyRevoked, "certificate %s is already revoked", serial)
	}
	if err != nil {
		a.cfg.Log.Error("self-revocation", "serial", serial, "err", err)
		return fail(protocol.CodeInternal, "the CA failed to revoke the certificate")
	}
	return protocol.RevokeResponse{CRLNumber: crl.Number.String()}
}

func (a *Authority) issuedCert(serial string) (*x509.Certificate, error) {
	var cert *x509.Certificate
	err := a.st.View(func(tx *store.Tx) error {
		var err error
		cert, err = loadIssued(tx, serial)
		return err
	})
	return cert, err
}
