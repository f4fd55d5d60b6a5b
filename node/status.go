package node

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
)

// StatusReport is the state of one certificate as this node sees it.
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
}

// Status returns the state of user's newest known certificate or, with
// der set, of that certificate, checked against the node's newest CRL.
func (n *Node) Status(user string, der []byte) (*StatusReport, error) {
	cert, err := n.statusTarget(user, der)
	if err != nil {
		return nil, err
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
