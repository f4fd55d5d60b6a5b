package node_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
)

// issueOpen has a, which must be in open mode, certify a new key for
// user, as enrollment over libp2p would.
func issueOpen(t *testing.T, a *ca.Authority, user string) *x509.Certificate {
	t.Helper()
	id, err := peer.IDFromPrivateKey(newPeerKey(t))
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ident := protocol.Identity{User: user, KeyVersion: 1, PeerID: id}
	der, err := x509.CreateCertificateRequest(rand.Reader,
		&x509.CertificateRequest{Subject: pkix.Name{CommonName: user}, URIs: ident.URIs()}, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.Issue(ca.Request{Peer: id, CSR: csr})
	if err != nil {
		t.Fatalf("Issue to %s: %v", user, err)
	}
	return cert
}

// TestVerifyChainClockSkew checks a freshly issued certificate on nodes
// whose clocks differ from the CA's. The CA backdates NotBefore by one
// minute, so a node up to 60 s behind accepts it.
func TestVerifyChainClockSkew(t *testing.T) {
	caNow := time.Now().Truncate(time.Second)
	a, err := ca.Init(newStore(t), "Test CA", ca.Config{
		Open:     true,
		Validity: time.Hour,
		Now:      func() time.Time { return caNow },
	})
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	cert := issueOpen(t, a, "alice")
	crl, err := a.CRL()
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	tests := []struct {
		name       string
		nodeNow    time.Time
		wantStatus string
	}{
		{"node in step", caNow, ca.StatusValid},
		{"node 60 s behind", caNow.Add(-60 * time.Second), ca.StatusValid},
		{"node 61 s behind", caNow.Add(-61 * time.Second), ca.StatusNotYetValid},
		{"node 2 h behind", caNow.Add(-2 * time.Hour), ca.StatusNotYetValid},
		{"node at exactly NotAfter", cert.NotAfter, ca.StatusValid},
		{"node second past NotAfter", cert.NotAfter.Add(time.Second), ca.StatusExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ca.Check(cert, crl, tc.nodeNow).State
			if got != tc.wantStatus {
				t.Errorf("Check = %q, want %q", got, tc.wantStatus)
			}
			err := node.VerifyChain(cert, a.Certificate(), tc.nodeNow)
			if tc.wantStatus == ca.StatusValid && err != nil {
				t.Errorf("VerifyChain: %v", err)
			}
			if tc.wantStatus != ca.StatusValid && err == nil {
				t.Errorf("VerifyChain accepted a certificate that is %s", tc.wantStatus)
			}
		})
	}
}
