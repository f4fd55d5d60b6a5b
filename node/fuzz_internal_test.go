package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// FuzzDecodeMessageBodies checks that the decoders of data and
// acknowledgement bodies never panic, and that whatever they accept
// encodes back to the same bytes.
func FuzzDecodeMessageBodies(f *testing.F) {
	valid, err := encodeData(&Message{ID: newMessageID(), Sent: time.Now(), Text: "hello, bob"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:messageIDSize])
	f.Add(valid[:dataHeaderSize])
	f.Add(append(bytes.Clone(valid[:dataHeaderSize]), 0xff, 0xfe))
	f.Add(bytes.Repeat([]byte{0xff}, dataHeaderSize))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, body []byte) {
		if id, sent, text, err := decodeData(body); err == nil {
			again, err := encodeData(&Message{ID: id, Sent: sent, Text: text})
			if err != nil {
				t.Fatalf("decoded data body does not encode: %v", err)
			}
			if !bytes.Equal(again, body) {
				t.Fatalf("data body round trip returned %x, want %x", again, body)
			}
		} else if len(body) >= dataHeaderSize {
			t.Fatalf("rejected a data body of %d bytes: %v", len(body), err)
		}
		id, err := decodeAck(body)
		if err != nil {
			if len(body) == messageIDSize {
				t.Fatalf("rejected an acknowledgement of %d bytes: %v", len(body), err)
			}
			return
		}
		raw, err := hex.DecodeString(id)
		if err != nil || !bytes.Equal(raw, body) {
			t.Fatalf("acknowledgement ID %q does not encode the body %x", id, body)
		}
	})
}

// revocationFixture is a CA, the CRL a node starts from, and a
// Revocations on a real libp2p host that joined the CA's topic without
// listening or dialing.
type revocationFixture struct {
	authority *ca.Authority
	caKey     ed25519.PrivateKey
	base      *x509.RevocationList
	rev       *Revocations

	mu      sync.Mutex
	applied []*x509.RevocationList
}

func newRevocationFixture(tb testing.TB) *revocationFixture {
	tb.Helper()
	st, err := store.Create(tb.TempDir(), []byte("fuzz passphrase"),
		&store.Options{KDF: &store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		tb.Fatalf("create store: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	a, err := ca.Init(st, "Fuzz CA", ca.Config{Open: true})
	if err != nil {
		tb.Fatalf("ca.Init: %v", err)
	}
	// "ca" is the record key under which ca.Init stores its key.
	keyDER, err := st.Get(store.Keys, "ca")
	if err != nil {
		tb.Fatalf("read CA key: %v", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		tb.Fatalf("parse CA key: %v", err)
	}
	base, err := a.CRL()
	if err != nil {
		tb.Fatal(err)
	}
	fx := &revocationFixture{authority: a, caKey: key.(ed25519.PrivateKey), base: base}

	peerKey, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := NewHost(HostConfig{Key: peerKey})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	apply := func(crl *x509.RevocationList, _ string) {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		fx.applied = append(fx.applied, crl)
	}
	log := slog.New(slog.DiscardHandler)
	fx.rev, err = JoinRevocations(context.Background(), h, a.Certificate(), base, apply, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(fx.rev.Close)
	return fx
}

// reset makes the base CRL current again and forgets what was applied,
// so that every input meets the same state.
func (fx *revocationFixture) reset() {
	fx.rev.applyMu.Lock()
	fx.rev.mu.Lock()
	fx.rev.current = fx.base
	fx.rev.mu.Unlock()
	fx.rev.applyMu.Unlock()
	fx.mu.Lock()
	fx.applied = nil
	fx.mu.Unlock()
}

// takeApplied returns the CRLs applied since the last reset.
func (fx *revocationFixture) takeApplied() []*x509.RevocationList {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.applied
}

// signCRL signs tmpl with the CA key.
func (fx *revocationFixture) signCRL(tb testing.TB, tmpl *x509.RevocationList) []byte {
	tb.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, fx.authority.Certificate(), fx.caKey)
	if err != nil {
		tb.Fatalf("create CRL: %v", err)
	}
	return der
}

// revokeOne issues a certificate to user and revokes it, returning the
// CA's new CRL.
func (fx *revocationFixture) revokeOne(tb testing.TB, user string) *x509.RevocationList {
	tb.Helper()
	peerKey, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(peerKey)
	if err != nil {
		tb.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ident := protocol.Identity{User: user, KeyVersion: 1, PeerID: id}
	tmpl := &x509.CertificateRequest{URIs: ident.URIs()}
	tmpl.Subject.CommonName = user
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := fx.authority.Issue(ca.Request{Peer: id, CSR: csr}); err != nil {
		tb.Fatalf("issue %s: %v", user, err)
	}
	crl, err := fx.authority.Revoke(user, ca.ReasonKeyCompromise)
	if err != nil {
		tb.Fatal(err)
	}
	return crl
}

// FuzzRevocationValidator feeds arbitrary bytes through the gossip
// validator and Revocations.Offer, starting each time from the CA's
// first CRL. Neither may panic, the two must agree, and a CRL is accepted
// and applied only if it is exactly the bytes given, signed by the CA
// and newer than the current one.
func FuzzRevocationValidator(f *testing.F) {
	fx := newRevocationFixture(f)
	caCert := fx.authority.Certificate()
	newer := fx.revokeOne(f, "carol")
	f.Add(newer.Raw)
	f.Add(fx.base.Raw)
	f.Add(append(bytes.Clone(newer.Raw), 0))
	now := time.Now().UTC().Truncate(time.Second)
	entry := x509.RevocationListEntry{SerialNumber: big.NewInt(7), RevocationTime: now}
	f.Add(fx.signCRL(f, &x509.RevocationList{
		Number: big.NewInt(9), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{entry, entry},
	}))
	other := newRevocationFixture(f)
	f.Add(other.revokeOne(f, "mallory").Raw)
	f.Add([]byte{})

	from := peer.ID("fuzz")
	f.Fuzz(func(t *testing.T, der []byte) {
		fx.reset()
		msg := &pubsub.Message{Message: &pubsubpb.Message{Data: der}}
		verdict := fx.rev.validate(context.Background(), from, msg)
		applied, offerErr := fx.rev.Offer(der, "fuzz")

		signed := false
		if crl, err := x509.ParseRevocationList(der); err == nil && bytes.Equal(crl.Raw, der) {
			signed = crl.CheckSignatureFrom(caCert) == nil
		}
		switch verdict {
		case pubsub.ValidationAccept:
			if !signed {
				t.Fatal("the validator accepted a CRL the CA did not sign")
			}
			if !applied {
				t.Fatalf("the validator accepted a CRL that Offer did not apply (error %v)", offerErr)
			}
		case pubsub.ValidationIgnore:
			if offerErr != nil || applied {
				t.Fatalf("the validator ignored a CRL that Offer applied (%v) or rejected (%v)", applied, offerErr)
			}
		case pubsub.ValidationReject:
			if offerErr == nil {
				t.Fatal("the validator rejected a CRL that Offer accepted")
			}
		default:
			t.Fatalf("unexpected validation result %v", verdict)
		}

		got := fx.takeApplied()
		if !applied {
			if len(got) != 0 {
				t.Fatalf("Offer applied %d CRLs but reported none", len(got))
			}
			if fx.rev.Current() != fx.base {
				t.Fatal("Offer changed the current CRL without applying it")
			}
			return
		}
		if len(got) != 1 || !bytes.Equal(got[0].Raw, der) {
			t.Fatalf("Offer applied %d CRLs, want exactly the one offered", len(got))
		}
		if err := got[0].CheckSignatureFrom(caCert); err != nil {
			t.Fatalf("Offer applied a CRL the CA did not sign: %v", err)
		}
		if got[0].Number.Cmp(fx.base.Number) <= 0 {
			t.Fatalf("Offer applied CRL %s, not newer than %s", got[0].Number, fx.base.Number)
		}
		if fx.rev.Current() != got[0] {
			t.Fatal("the applied CRL is not the current one")
		}
	})
}
