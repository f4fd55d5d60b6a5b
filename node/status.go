package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
)

// StatusReport is the state of one certificate by this node's records.
type StatusReport struct {
	User       string    `json:"user"`
	Serial     string    `json:"serial"`
	KeyVersion int       `json:"key_version"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	ca.CertStatus
	// CRLNumber is the number of the CRL the status was checked against,
	// or 0 if the node has none.
	CRLNumber uint64 `json:"crl_number"`
	// Source is "local CRL", or "CA" for an answer the CA signed.
	Source string `json:"source"`
}

// Status returns the state of user's newest known certificate or, with
// der set, of that certificate, checked against the node's newest CRL.
// With askCA set, the state comes from the CA's status service instead,
// in an answer whose CA signature has been checked.
func (n *Node) Status(ctx context.Context, user string, der []byte, askCA bool) (*StatusReport, error) {
	cert, err := n.statusTarget(user, der)
	if err != nil {
		return nil, err
	}
	if askCA {
		return n.statusFromCA(ctx, cert)
	}
	caCert := n.Identity().CACert
	if err := cert.CheckSignatureFrom(caCert); err != nil {
		return nil, fmt.Errorf("certificate %s was not issued by CA %q: %w",
			ca.SerialString(cert.SerialNumber), caCert.Subject.CommonName, err)
	}
	r := &StatusReport{
		Serial:     ca.SerialString(cert.SerialNumber),
		NotBefore:  cert.NotBefore.UTC(),
		NotAfter:   cert.NotAfter.UTC(),
		CertStatus: ca.Check(cert, n.rev.Current(), n.cfg.Now()),
		CRLNumber:  n.rev.Number(),
		Source:     "local CRL",
	}
	if id, err := protocol.CertIdentity(cert); err == nil {
		r.User, r.KeyVersion = id.User, id.KeyVersion
	}
	return r, nil
}

func (n *Node) statusTarget(user string, der []byte) (*x509.Certificate, error) {
	if len(der) > 0 {
		return x509.ParseCertificate(der)
	}
	if id := n.Identity(); user == id.User {
		return id.Cert, nil
	}
	c, err := getContact(n.st, user)
	if err != nil {
		return nil, err
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate stored for " + user)
	}
	return x509.ParseCertificate(c.Certificate)
}

// statusFromCA requests the state of cert from the CA's status service and checks the
// CA's signature on the answer.
func (n *Node) statusFromCA(ctx context.Context, cert *x509.Certificate) (*StatusReport, error) {
	caInfo, err := n.caPeer()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, directoryTimeout)
	defer cancel()
	if err := n.h.Connect(ctx, *caInfo); err != nil {
		return nil, fmt.Errorf("cannot reach the CA %s: %w", caInfo.ID, err)
	}
	s, err := n.h.NewStream(ctx, caInfo.ID, protocol.StatusID)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(directoryTimeout))
	if err := protocol.WriteJSON(s, protocol.StatusRequest{Serial: ca.SerialString(cert.SerialNumber)}); err != nil {
		s.Reset()
		return nil, err
	}
	s.CloseWrite()
	frame, err := protocol.ReadFrame(s, protocol.MaxStatusResponseSize)
	if err != nil {
		s.Reset()
		return nil, fmt.Errorf("read status response: %w", err)
	}
	resp, err := protocol.DecodeStatusResponse(frame)
	if err != nil {
		return nil, fmt.Errorf("the CA's status response: %w", err)
	}
	if err := ca.VerifyStatus(resp, n.Identity().CACert); err != nil {
		return nil, err
	}
	if resp.Answer.Serial != ca.SerialString(cert.SerialNumber) {
		return nil, fmt.Errorf("the CA's status response is for serial %s, not %s", resp.Answer.Serial, ca.SerialString(cert.SerialNumber))
	}
	r := &StatusReport{
		Serial:     resp.Answer.Serial,
		NotBefore:  cert.NotBefore.UTC(),
		NotAfter:   cert.NotAfter.UTC(),
		CertStatus: ca.CertStatus{State: resp.Answer.Status, Reason: resp.Answer.Reason, RevokedAt: resp.Answer.RevokedAt},
		Source:     "CA",
	}
	if number, ok := new(big.Int).SetString(resp.Answer.CRLNumber, 10); ok && number.IsUint64() {
		r.CRLNumber = number.Uint64()
	}
	if id, err := protocol.CertIdentity(cert); err == nil {
		r.User, r.KeyVersion = id.User, id.KeyVersion
	}
	return r, nil
}
