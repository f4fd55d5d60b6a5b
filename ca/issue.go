package ca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Request is one enrollment for [Authority.Issue] to judge.
type Request struct {
	// Peer is the libp2p peer that sent the request, as authenticated by
	// the connection.
	Peer peer.ID
	// CSR is the parsed certificate request.
	CSR *x509.CertificateRequest
	// Token is the enrollment token, if any.
	Token string
	// Continuity is a signature over the CSR by the key of the user's
	// current certificate, needed to certify a new key for a taken name.
	Continuity []byte
}

// ContinuityMessage returns the bytes a user's current key signs to vouch
// for a CSR of its successor key. The label keeps the signature from
// being valid for anything else.
func ContinuityMessage(csrDER []byte) []byte {
	const label = "skm enrollment continuity v1\x00"
	return append([]byte(label), csrDER...)
}

// Issue checks r and, if every check passes, signs and records a
// certificate. A rejection is a [*protocol.Error] whose message is meant
// for the requester; any other error is an internal failure. A rejected
// request changes nothing in the store.
func (a *Authority) Issue(r Request) (*x509.Certificate, error) {
	id, err := checkCSR(r.CSR, r.Peer)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := a.cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id.User},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(a.cfg.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  id.URIs(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, r.CSR.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}

	var crl *x509.RevocationList
	err = a.update(func(tx *store.Tx) error {
		if serial, err := tx.Get(store.RevokedKeys, keyHash(r.CSR.RawSubjectPublicKeyInfo)); err == nil {
			return protocol.Errorf(protocol.CodeKeyRevoked,
				"this key's certificate %s was revoked, and a revoked key is never certified again: generate a new key", serial)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// Without a continuity signature the token comes first, so that a
		// requester without a valid token learns nothing about which names
		// are taken.
		if len(r.Continuity) == 0 && !a.cfg.Open {
			if err := a.useToken(tx, r.Token, id.User, SerialString(serial)); err != nil {
				return err
			}
		}
		g, err := a.checkName(tx, id, r)
		if err != nil {
			return err
		}
		if err := recordIssued(tx, id, cert, now); err != nil {
			return err
		}
		if g.kind != grantSuccessor {
			return nil
		}
		// The successor supersedes the current certificate at once.
		if err := a.recordRevocation(tx, g.current, ReasonSuperseded); err != nil {
			return err
		}
		crl, err = a.signCRL(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	if crl != nil {
		a.cfg.Log.Info("certificate superseded", "user", id.User, "key_version", id.KeyVersion-1,
			"crl_number", crl.Number.String())
		a.published(crl)
	}
	return cert, nil
}

// update runs fn in a store transaction while holding a.mu.
func (a *Authority) update(fn func(tx *store.Tx) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Update(fn)
}

// checkCSR verifies the CSR's proof of possession and profile, and that
// it names the peer that sent it.
func checkCSR(csr *x509.CertificateRequest, sender peer.ID) (protocol.Identity, error) {
	if err := csr.CheckSignature(); err != nil {
		return protocol.Identity{}, protocol.Errorf(protocol.CodeBadCSR, "csr signature does not verify: %v", err)
	}
	if _, ok := csr.PublicKey.(ed25519.PublicKey); !ok {
		return protocol.Identity{}, protocol.Errorf(protocol.CodeBadCSR, "csr key is %s, want Ed25519", csr.PublicKeyAlgorithm)
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) > 0 {
		return protocol.Identity{}, protocol.Errorf(protocol.CodeBadCSR,
			"csr asks for DNS, email or IP names, which skm does not certify")
	}
	id, err := protocol.ParseIdentity(csr.Subject.CommonName, csr.URIs)
	if err != nil {
		return id, protocol.Errorf(protocol.CodeBadCSR, "csr: %v", err)
	}
	if id.PeerID != sender {
		return id, protocol.Errorf(protocol.CodePeerMismatch,
			"csr names peer %s but the request came from peer %s", id.PeerID, sender)
	}
	return id, nil
}

// grantKind is the case of the name policy that admits a request.
type grantKind int

const (
	grantNew       grantKind = iota // a free name, key version 1
	grantReissue                    // the current key, version and peer again
	grantSuccessor                  // the next version, vouched for by the current key
	grantRecovery                   // the next version after the current certificate was revoked
)

// grant is checkName's verdict: the case, and the serial of the name's
// current certificate if it has one.
type grant struct {
	kind    grantKind
	current string
}

// checkName enforces who may hold a user name. A free name goes to key
// version 1 of any peer not already certified for another name. A taken
// name gets a new certificate in three cases only: for the same key,
// version and peer; for the next version with a continuity signature by
// the current key, which needs no token; and, once the current
// certificate is revoked, for the next version with a token.
func (a *Authority) checkName(tx *store.Tx, id protocol.Identity, r Request) (grant, error) {
	if owner, err := tx.Get(store.Peers, id.PeerID.String()); err == nil && string(owner) != id.User {
		return grant{}, protocol.Errorf(protocol.CodePeerMismatch,
			"peer %s is already certified for user %q", id.PeerID, owner)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return grant{}, err
	}
	raw, err := tx.Get(store.Users, id.User)
	if errors.Is(err, store.ErrNotFound) {
		if len(r.Continuity) > 0 {
			return grant{}, protocol.Errorf(protocol.CodeBadCSR,
				"a continuity signature was given, but user %q has no certificate: enroll with a token", id.User)
		}
		if id.KeyVersion != 1 {
			return grant{}, protocol.Errorf(protocol.CodeBadCSR,
				"user %q has no certificate yet, so the first key version must be 1, not %d", id.User, id.KeyVersion)
		}
		return grant{kind: grantNew}, nil
	}
	if err != nil {
		return grant{}, err
	}
	current, err := loadCurrent(tx, raw)
	if err != nil {
		return grant{}, err
	}
	serial := SerialString(current.SerialNumber)
	revoked, err := revocation(tx, serial)
	if err != nil {
		return grant{}, err
	}
	curID, err := protocol.CertIdentity(current)
	if err != nil {
		return grant{}, err
	}
	next := id.KeyVersion == curID.KeyVersion+1
	currentKey := current.PublicKey.(ed25519.PublicKey)
	switch {
	case len(r.Continuity) > 0 && revoked != nil:
		return grant{}, protocol.Errorf(protocol.CodeKeyRevoked,
			"the current certificate of %q is revoked, so its key cannot vouch for a successor: ask the CA operator for a token", id.User)
	case len(r.Continuity) > 0:
		if !ed25519.Verify(currentKey, ContinuityMessage(r.CSR.Raw), r.Continuity) {
			return grant{}, protocol.Errorf(protocol.CodeNameTaken,
				"the continuity signature does not verify with the current key of %q", id.User)
		}
		if !next {
			return grant{}, protocol.Errorf(protocol.CodeBadCSR,
				"key version %d does not follow the current version %d", id.KeyVersion, curID.KeyVersion)
		}
		return grant{kind: grantSuccessor, current: serial}, nil
	case bytes.Equal(currentKey, r.CSR.PublicKey.(ed25519.PublicKey)) && curID.KeyVersion == id.KeyVersion && curID.PeerID == id.PeerID:
		return grant{kind: grantReissue, current: serial}, nil
	case revoked != nil && next:
		return grant{kind: grantRecovery, current: serial}, nil
	}
	return grant{}, protocol.Errorf(protocol.CodeNameTaken,
		"user name %q is taken: choose another name, or sign the request with the user's current key", id.User)
}

func loadCurrent(tx *store.Tx, userRaw []byte) (*x509.Certificate, error) {
	var u userRecord
	if err := json.Unmarshal(userRaw, &u); err != nil {
		return nil, fmt.Errorf("user record: %w", err)
	}
	raw, err := tx.Get(store.Issued, u.Serial)
	if err != nil {
		return nil, err
	}
	var rec issuedRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("issued %s: %w", u.Serial, err)
	}
	return x509.ParseCertificate(rec.DER)
}

func recordIssued(tx *store.Tx, id protocol.Identity, cert *x509.Certificate, now time.Time) error {
	serial := SerialString(cert.SerialNumber)
	rec, err := json.Marshal(issuedRecord{
		User:       id.User,
		KeyVersion: id.KeyVersion,
		PeerID:     id.PeerID.String(),
		DER:        cert.Raw,
		Issued:     now.UTC(),
	})
	if err != nil {
		return err
	}
	if err := tx.Insert(store.Issued, serial, rec); err != nil {
		return err
	}
	user, err := json.Marshal(userRecord{Serial: serial, KeyVersion: id.KeyVersion})
	if err != nil {
		return err
	}
	if err := tx.Put(store.Users, id.User, user); err != nil {
		return err
	}
	return tx.Put(store.Peers, id.PeerID.String(), []byte(id.User))
}
