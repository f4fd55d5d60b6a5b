package node_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// cheapKDF keeps store creation fast. It is far below what a real store
// uses.
var cheapKDF = &store.Options{KDF: &store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}}

// Listen addresses of the CA hosts in these tests.
const (
	listenTCP  = "/ip4/127.0.0.1/tcp/0"
	listenQUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
)

// transports lists the transports that enrollment tests run over, with
// a loopback listen address each. QUIC gets its own runs because a
// stream reset there can discard a response that was already written.
var transports = []struct{ name, listen string }{
	{"tcp", listenTCP},
	{"quic", listenQUIC},
}

// enrollTimeout bounds one node.Enroll call in these tests.
const enrollTimeout = 20 * time.Second

func newStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Create(t.TempDir(), []byte("node passphrase"), cheapKDF)
	if err != nil {
		t.Fatalf("create store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newNode creates a node identity for user in a fresh store.
func newNode(t *testing.T, user string) *store.Store {
	t.Helper()
	st := newStore(t)
	if _, err := node.Init(st, user); err != nil {
		t.Fatalf("node.Init: %v", err)
	}
	return st
}

func newPeerKey(t *testing.T) p2pcrypto.PrivKey {
	t.Helper()
	key, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// serve starts a host with key that listens on listen and serves
// enrollment with handler. It returns the address a node dials.
func serve(t *testing.T, key p2pcrypto.PrivKey, listen string, handler network.StreamHandler) (host.Host, ma.Multiaddr) {
	t.Helper()
	h, err := node.NewHost(node.HostConfig{Key: key, Listen: []ma.Multiaddr{ma.StringCast(listen)}})
	if err != nil {
		t.Fatalf("start host: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetStreamHandler(protocol.EnrollID, handler)
	addrs := node.FullAddrs(h)
	if len(addrs) != 1 {
		t.Fatalf("host listens on %v, want one address", addrs)
	}
	return h, addrs[0]
}

// testCA is a real CA serving enrollment on loopback.
type testCA struct {
	a    *ca.Authority
	addr ma.Multiaddr
}

func startCA(t *testing.T, listen string) *testCA {
	t.Helper()
	st := newStore(t)
	a, err := ca.Init(st, "Test CA", ca.Config{})
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	_, addr := serve(t, a.PeerKey(), listen, a.HandleEnroll)
	return &testCA{a: a, addr: addr}
}

func (c *testCA) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := c.a.NewToken(user, ca.DefaultTokenTTL)
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	return tok.Value
}

func enroll(st *store.Store, addr ma.Multiaddr, token string) (*node.Identity, error) {
	return node.Enroll(context.Background(), st, node.EnrollConfig{CA: addr, Token: token, Timeout: enrollTimeout})
}

// snapshot returns every record of a node's tables, by table and key.
func snapshot(t *testing.T, st *store.Store) map[store.Table]map[string]string {
	t.Helper()
	snap := map[store.Table]map[string]string{}
	err := st.View(func(tx *store.Tx) error {
		for _, table := range []store.Table{store.Keys, store.Certs, store.Meta} {
			records := map[string]string{}
			err := tx.Each(table, func(key string, value []byte) error {
				records[key] = string(value)
				return nil
			})
			if err != nil {
				return err
			}
			snap[table] = records
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the node tables: %v", err)
	}
	return snap
}

func checkUnchanged(t *testing.T, before, after map[store.Table]map[string]string) {
	t.Helper()
	for table, records := range before {
		for key, value := range records {
			if got, ok := after[table][key]; !ok {
				t.Errorf("%s %q was deleted", table, key)
			} else if got != value {
				t.Errorf("%s %q changed", table, key)
			}
		}
		for key := range after[table] {
			if _, ok := records[key]; !ok {
				t.Errorf("%s %q was added", table, key)
			}
		}
	}
}

// checkNotEnrolled fails the test if st holds any certificate.
func checkNotEnrolled(t *testing.T, st *store.Store) {
	t.Helper()
	id, err := node.LoadIdentity(st)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	if id.Cert != nil || id.CACert != nil {
		t.Error("a failed enrollment stored a certificate")
	}
}

func TestEnrollStoresCertificates(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := startCA(t, tr.listen)
			st := newNode(t, "alice")
			id, err := enroll(st, c.addr, c.token(t, "alice"))
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if id.Cert == nil || id.CACert == nil {
				t.Fatal("Enroll returned an identity without certificates")
			}
			if !bytes.Equal(id.CACert.Raw, c.a.Certificate().Raw) {
				t.Error("Enroll returned another CA certificate")
			}
			got, err := protocol.CertIdentity(id.Cert)
			if err != nil {
				t.Fatalf("CertIdentity: %v", err)
			}
			if got != id.Protocol() {
				t.Errorf("certificate binds %+v, want %+v", got, id.Protocol())
			}
			if err := node.VerifyChain(id.Cert, id.CACert, time.Now()); err != nil {
				t.Errorf("VerifyChain: %v", err)
			}

			loaded, err := node.LoadIdentity(st)
			if err != nil {
				t.Fatalf("LoadIdentity: %v", err)
			}
			if loaded.Cert == nil || !bytes.Equal(loaded.Cert.Raw, id.Cert.Raw) {
				t.Error("LoadIdentity does not return the enrolled certificate")
			}
			if loaded.CACert == nil || !bytes.Equal(loaded.CACert.Raw, id.CACert.Raw) {
				t.Error("LoadIdentity does not return the CA certificate")
			}

			list, err := c.a.List()
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if len(list) != 1 || list[0].Serial != ca.SerialString(id.Cert.SerialNumber) {
				t.Errorf("CA lists %+v, want the one certificate it issued", list)
			}
		})
	}
}

func TestEnrollRenewsWithSameCA(t *testing.T) {
	c := startCA(t, listenTCP)
	st := newNode(t, "alice")
	first, err := enroll(st, c.addr, c.token(t, "alice"))
	if err != nil {
		t.Fatalf("first Enroll: %v", err)
	}
	second, err := enroll(st, c.addr, c.token(t, "alice"))
	if err != nil {
		t.Fatalf("second Enroll: %v", err)
	}
	if first.Cert.SerialNumber.Cmp(second.Cert.SerialNumber) == 0 {
		t.Error("renewal returned the same certificate")
	}
	loaded, err := node.LoadIdentity(st)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	if !bytes.Equal(loaded.Cert.Raw, second.Cert.Raw) {
		t.Error("LoadIdentity does not return the renewed certificate")
	}
}

func TestEnrollUnreachableCA(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	caID, err := peer.IDFromPrivateKey(newPeerKey(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, caID))

	st := newNode(t, "alice")
	before := snapshot(t, st)
	_, err = enroll(st, addr, "token")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the CA") {
		t.Fatalf("Enroll returned %v, want a cannot reach the CA error", err)
	}
	if errors.Is(err, node.ErrRejected) {
		t.Error("an unreachable CA is reported as a rejection")
	}
	checkUnchanged(t, before, snapshot(t, st))
	checkNotEnrolled(t, st)
}

func TestEnrollRejected(t *testing.T) {
	tests := []struct {
		name string
		// token returns the token to send, after any setup.
		token      func(t *testing.T, c *testCA) string
		wantReason string
	}{
		{"unknown token", func(*testing.T, *testCA) string { return "bm90IGEgdG9rZW4" },
			"unknown enrollment token"},
		{"missing token", func(*testing.T, *testCA) string { return "" },
			"an enrollment token is required"},
		{"token for another user", func(t *testing.T, c *testCA) string { return c.token(t, "bob") },
			"token is for another user"},
		{"name already taken", func(t *testing.T, c *testCA) string {
			owner := newNode(t, "alice")
			if _, err := enroll(owner, c.addr, c.token(t, "alice")); err != nil {
				t.Fatalf("enroll the name's owner: %v", err)
			}
			return c.token(t, "alice")
		}, `user name "alice" is taken`},
	}
	for _, tr := range transports {
		for _, tc := range tests {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				c := startCA(t, tr.listen)
				token := tc.token(t, c)
				st := newNode(t, "alice")
				before := snapshot(t, st)

				_, err := enroll(st, c.addr, token)
				if !errors.Is(err, node.ErrRejected) {
					t.Fatalf("Enroll returned %v, want ErrRejected", err)
				}
				if !strings.Contains(err.Error(), tc.wantReason) {
					t.Errorf("rejection %q lacks the CA's reason %q", err, tc.wantReason)
				}
				checkUnchanged(t, before, snapshot(t, st))
				checkNotEnrolled(t, st)
			})
		}
	}
}

func TestEnrollDifferentCARejected(t *testing.T) {
	first := startCA(t, listenTCP)
	second := startCA(t, listenTCP)
	st := newNode(t, "alice")
	enrolled, err := enroll(st, first.addr, first.token(t, "alice"))
	if err != nil {
		t.Fatalf("Enroll with the first CA: %v", err)
	}

	before := snapshot(t, st)
	_, err = enroll(st, second.addr, second.token(t, "alice"))
	if err == nil || !strings.Contains(err.Error(), "differs from the trusted one") {
		t.Fatalf("Enroll with another CA returned %v, want a trust anchor error", err)
	}
	if errors.Is(err, node.ErrRejected) {
		t.Error("a changed trust anchor is reported as a CA rejection")
	}
	checkUnchanged(t, before, snapshot(t, st))
	loaded, err := node.LoadIdentity(st)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	if !bytes.Equal(loaded.CACert.Raw, enrolled.CACert.Raw) || !bytes.Equal(loaded.Cert.Raw, enrolled.Cert.Raw) {
		t.Error("enrolling with another CA replaced the stored certificates")
	}
}

func TestEnrollCAOnAnotherHost(t *testing.T) {
	st := newStore(t)
	a, err := ca.Init(st, "Test CA", ca.Config{Open: true})
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	// A real CA, but served by a host whose peer ID its certificate
	// does not name.
	_, addr := serve(t, newPeerKey(t), listenTCP, a.HandleEnroll)

	nodeStore := newNode(t, "alice")
	before := snapshot(t, nodeStore)
	_, err = enroll(nodeStore, addr, "")
	if err == nil || !strings.Contains(err.Error(), "CA certificate names peer") {
		t.Fatalf("Enroll returned %v, want a CA peer mismatch error", err)
	}
	checkUnchanged(t, before, snapshot(t, nodeStore))
	checkNotEnrolled(t, nodeStore)
}

func TestEnrollNotInitialized(t *testing.T) {
	c := startCA(t, listenTCP)
	if _, err := enroll(newStore(t), c.addr, c.token(t, "alice")); !errors.Is(err, node.ErrNotInitialized) {
		t.Errorf("Enroll on an empty store returned %v, want ErrNotInitialized", err)
	}
}

func TestEnrollAddressWithoutPeerID(t *testing.T) {
	st := newNode(t, "alice")
	_, err := enroll(st, ma.StringCast("/ip4/127.0.0.1/tcp/4001"), "token")
	if err == nil || !strings.Contains(err.Error(), "invalid CA address") {
		t.Errorf("Enroll returned %v, want an invalid CA address error", err)
	}
}

// fakeCA is a hostile CA: a libp2p host that answers enrollment with
// whatever a test case builds, signed by a CA key of its own.
type fakeCA struct {
	key  ed25519.PrivateKey
	cert *x509.Certificate
	peer peer.ID
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// newFakeCA creates a CA certificate for the host with key hostKey.
// modify, if not nil, changes the certificate template before signing.
func newFakeCA(t *testing.T, hostKey p2pcrypto.PrivKey, modify func(*x509.Certificate)) *fakeCA {
	t.Helper()
	id, err := peer.IDFromPrivateKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Fake CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{protocol.PeerURI(id)},
	}
	if modify != nil {
		modify(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create fake CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCA{key: key, cert: cert, peer: id}
}

// leaf is what the fake CA signs: a template and the key it certifies.
type leaf struct {
	tmpl *x509.Certificate
	pub  crypto.PublicKey
}

// issue signs a certificate for the CSR as the real CA would, after
// modify, if not nil, has changed it. It runs in the stream handler, so
// it returns errors instead of failing the test.
func (f *fakeCA) issue(csr *x509.CertificateRequest, modify func(*leaf)) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	l := &leaf{
		tmpl: &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: csr.Subject.CommonName},
			NotBefore:             now.Add(-time.Minute),
			NotAfter:              now.Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			URIs:                  csr.URIs,
		},
		pub: csr.PublicKey,
	}
	if modify != nil {
		modify(l)
	}
	der, err := x509.CreateCertificate(rand.Reader, l.tmpl, f.cert, l.pub, f.key)
	if err != nil {
		return nil, fmt.Errorf("sign fake certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// responder builds the bytes a fake CA writes in reply to a CSR.
type responder func(f *fakeCA, csr *x509.CertificateRequest) ([]byte, error)

// handler returns a stream handler that reads a request and writes what
// respond returns. It must not call t, because it runs outside the test
// goroutine: a failure shows in the node's error instead.
func (f *fakeCA) handler(respond responder) network.StreamHandler {
	return func(s network.Stream) {
		defer s.Close()
		s.SetDeadline(time.Now().Add(enrollTimeout))
		frame, err := protocol.ReadFrame(s, protocol.MaxEnrollRequestSize)
		if err != nil {
			s.Reset()
			return
		}
		_, csr, err := protocol.DecodeEnrollRequest(frame)
		if err != nil {
			s.Reset()
			return
		}
		p, err := respond(f, csr)
		if err != nil {
			s.Reset()
			return
		}
		if _, err := s.Write(p); err != nil {
			s.Reset()
		}
	}
}

func responseFrame(cert, caCert *x509.Certificate) ([]byte, error) {
	var buf bytes.Buffer
	err := protocol.WriteJSON(&buf, protocol.EnrollResponse{Certificate: cert.Raw, CACertificate: caCert.Raw})
	return buf.Bytes(), err
}

// issueModified returns a responder that sends a leaf changed by modify,
// issued by issuer (the serving fake CA if nil), under the serving fake
// CA's certificate.
func issueModified(issuer *fakeCA, modify func(*leaf)) responder {
	return func(f *fakeCA, csr *x509.CertificateRequest) ([]byte, error) {
		signer := f
		if issuer != nil {
			signer = issuer
		}
		cert, err := signer.issue(csr, modify)
		if err != nil {
			return nil, err
		}
		return responseFrame(cert, f.cert)
	}
}

// rawResponse returns a responder that sends p.
func rawResponse(p []byte) responder {
	return func(*fakeCA, *x509.CertificateRequest) ([]byte, error) { return p, nil }
}

func TestEnrollHostileCA(t *testing.T) {
	otherPeer, err := peer.IDFromPrivateKey(newPeerKey(t))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// setURIs sets the identity URIs of a leaf, keeping its user name.
	setURIs := func(l *leaf, version int, p peer.ID) {
		l.tmpl.URIs = protocol.Identity{User: l.tmpl.Subject.CommonName, KeyVersion: version, PeerID: p}.URIs()
	}

	tests := []struct {
		name string
		// modifyCA changes the fake CA's certificate template.
		modifyCA func(*x509.Certificate)
		// respond returns the responder of the fake CA. It runs in the
		// test goroutine, so it may set up more parts.
		respond func(t *testing.T) responder
		// wantErr is a part of the expected error; empty means success.
		wantErr string
	}{
		{name: "honest fake CA accepted",
			respond: func(*testing.T) responder { return issueModified(nil, nil) }},
		{name: "CA certificate names another peer", wantErr: "CA certificate names peer",
			modifyCA: func(c *x509.Certificate) { c.URIs = []*url.URL{protocol.PeerURI(otherPeer)} },
			respond:  func(*testing.T) responder { return issueModified(nil, nil) }},
		{name: "CA certificate without peer URI", wantErr: "certificate has no skm:peer URI",
			modifyCA: func(c *x509.Certificate) { c.URIs = nil },
			respond:  func(*testing.T) responder { return issueModified(nil, nil) }},
		{name: "CA certificate not a CA", wantErr: "not a self-signed CA certificate",
			modifyCA: func(c *x509.Certificate) { c.IsCA = false },
			respond:  func(*testing.T) responder { return issueModified(nil, nil) }},
		{name: "leaf from another CA", wantErr: "verify certificate",
			respond: func(t *testing.T) responder {
				// Another CA with the same name and host, but its own key.
				return issueModified(newFakeCA(t, newPeerKey(t), nil), nil)
			}},
		{name: "leaf already expired", wantErr: "verify certificate",
			respond: func(*testing.T) responder {
				return issueModified(nil, func(l *leaf) { l.tmpl.NotAfter = time.Now().Add(-time.Second) })
			}},
		{name: "leaf without client auth", wantErr: "verify certificate",
			respond: func(*testing.T) responder {
				return issueModified(nil, func(l *leaf) {
					l.tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
				})
			}},
		{name: "leaf for another key", wantErr: "certificate is for another key",
			respond: func(*testing.T) responder {
				return issueModified(nil, func(l *leaf) { l.pub = otherKey.Public() })
			}},
		{name: "leaf for another user", wantErr: "certificate binds",
			respond: func(*testing.T) responder {
				return issueModified(nil, func(l *leaf) { l.tmpl.Subject.CommonName = "mallory" })
			}},
		{name: "leaf for another key version", wantErr: "certificate binds",
			respond: func(*testing.T) responder {
				return issueModified(nil, func(l *leaf) {
					p, err := protocol.CertPeerID(&x509.Certificate{URIs: l.tmpl.URIs})
					if err == nil {
						setURIs(l, 2, p)
					}
				})
			}},
		{name: "leaf for another peer", wantErr: "certificate binds",
			respond: func(*testing.T) responder {
				return issueModified(nil, func(l *leaf) { setURIs(l, 1, otherPeer) })
			}},
		{name: "response frame too large", wantErr: "frame too large",
			respond: func(*testing.T) responder {
				return rawResponse(binary.BigEndian.AppendUint32(nil, protocol.MaxEnrollResponseSize+1))
			}},
		{name: "garbage response", wantErr: "decode",
			respond: func(*testing.T) responder { return rawResponse(append([]byte{0, 0, 0, 5}, "xyzzy"...)) }},
		{name: "empty response", wantErr: "read enrollment response",
			respond: func(*testing.T) responder { return rawResponse(nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hostKey := newPeerKey(t)
			f := newFakeCA(t, hostKey, tc.modifyCA)
			_, addr := serve(t, hostKey, listenTCP, f.handler(tc.respond(t)))
			st := newNode(t, "alice")
			before := snapshot(t, st)

			id, err := enroll(st, addr, "token")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Enroll with an honest fake CA: %v", err)
				}
				if !bytes.Equal(id.CACert.Raw, f.cert.Raw) {
					t.Error("Enroll returned another CA certificate")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Enroll returned %v, want an error containing %q", err, tc.wantErr)
			}
			if errors.Is(err, node.ErrRejected) {
				t.Errorf("a hostile response is reported as a CA rejection: %v", err)
			}
			checkUnchanged(t, before, snapshot(t, st))
			checkNotEnrolled(t, st)
		})
	}
}
