package ca

import (
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// HandleStatus serves one status request with a signed answer. Register
// it for [protocol.StatusID].
func (a *Authority) HandleStatus(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(enrollTimeout))
	var resp protocol.StatusResponse
	var req protocol.StatusRequest
	if err := protocol.ReadJSON(s, protocol.MaxStatusRequestSize, &req); err != nil {
		resp.Error = protocol.Errorf(protocol.CodeBadRequest, "%v", err)
	} else if resp.Answer, resp.Signature, err = a.SignedStatus(req.Serial); err != nil {
		code := protocol.CodeInternal
		if errors.Is(err, ErrNotIssued) {
			code = protocol.CodeNotFound
		}
		resp.Error = protocol.Errorf(code, "%v", err)
	}
	if err := protocol.WriteJSON(s, resp); err != nil {
		s.Reset()
	}
}

// SignedStatus returns the CA's signed statement about the certificate
// with the given serial.
func (a *Authority) SignedStatus(serial string) (*protocol.StatusAnswer, []byte, error) {
	crl, err := a.CRL()
	if err != nil {
		return nil, nil, err
	}
	var cert *x509.Certificate
	err = a.st.View(func(tx *store.Tx) error {
		var err error
		if serial, err = resolveTarget(tx, serial); err != nil {
			return err
		}
		cert, err = loadIssued(tx, serial)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	now := a.cfg.Now()
	st := Check(cert, crl, now)
	ans := &protocol.StatusAnswer{
		Serial:    SerialString(cert.SerialNumber),
		Status:    st.State,
		Reason:    st.Reason,
		RevokedAt: st.RevokedAt,
		Produced:  now.UTC().Truncate(time.Second),
		CRLNumber: crl.Number.String(),
	}
	msg, err := protocol.StatusSigningMessage(ans)
	if err != nil {
		return nil, nil, err
	}
	return ans, ed25519.Sign(a.key, msg), nil
}

// VerifyStatus checks the CA's signature on a status answer.
func VerifyStatus(resp *protocol.StatusResponse, caCert *x509.Certificate) error {
	pub, ok := caCert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("CA key is %T, want Ed25519", caCert.PublicKey)
	}
	msg, err := protocol.StatusSigningMessage(resp.Answer)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, resp.Signature) {
		return errors.New("the status answer's signature does not verify with the CA key")
	}
	return nil
}
