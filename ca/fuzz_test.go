package ca_test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/internal/localapi"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// fuzzCA is an open CA in a temporary store with three enrolled users.
// The fuzz targets send their requests as alice's peer.
type fuzzCA struct {
	a                 *ca.Authority
	st                *store.Store
	key               ed25519.PrivateKey // the CA key, read back from the store
	alice, bob, carol *member
}

// member is an enrolled user: a libp2p peer, a signing key, the CSR
// that certified it and the certificate.
type member struct {
	user string
	peer peer.ID
	key  ed25519.PrivateKey
	csr  []byte
	cert *x509.Certificate
}

// newFuzzCA creates the CA once per fuzz process, in a store with a
// cheap KDF.
func newFuzzCA(tb testing.TB) *fuzzCA {
	tb.Helper()
	st, err := store.Create(tb.TempDir(), []byte(passphrase), cheapKDF)
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
	parsed, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		tb.Fatalf("parse CA key: %v", err)
	}
	c := &fuzzCA{a: a, st: st, key: parsed.(ed25519.PrivateKey)}
	c.alice = c.enroll(tb, "alice")
	c.bob = c.enroll(tb, "bob")
	c.carol = c.enroll(tb, "carol")
	err = st.Put(store.Addrs, "bob", []byte(`["/ip4/127.0.0.1/tcp/4001"]`))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// enroll issues user a certificate for key version 1 on a new peer.
func (c *fuzzCA) enroll(tb testing.TB, user string) *member {
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
	m := &member{user: user, peer: id, key: key}
	tmpl := csrTemplate(protocol.Identity{User: user, KeyVersion: 1, PeerID: id})
	if m.csr, err = x509.CreateCertificateRequest(rand.Reader, tmpl, key); err != nil {
		tb.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(m.csr)
	if err != nil {
		tb.Fatal(err)
	}
	if m.cert, err = c.a.Issue(ca.Request{Peer: id, CSR: csr}); err != nil {
		tb.Fatalf("issue %s: %v", user, err)
	}
	return m
}

// signCRL signs tmpl with the CA key, as only the CA could.
func (c *fuzzCA) signCRL(tb testing.TB, tmpl *x509.RevocationList) []byte {
	tb.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.a.Certificate(), c.key)
	if err != nil {
		tb.Fatalf("create CRL: %v", err)
	}
	return der
}

// secrets returns the encodings in which the CA's private keys must never
// appear in a response.
func (c *fuzzCA) secrets(tb testing.TB) [][]byte {
	tb.Helper()
	peerRaw, err := c.a.PeerKey().Raw()
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, k := range [][]byte{c.key, c.key.Seed(), peerRaw, peerRaw[:ed25519.SeedSize]} {
		out = append(out, k,
			[]byte(base64.StdEncoding.EncodeToString(k)),
			[]byte(base64.RawURLEncoding.EncodeToString(k)),
			[]byte(hex.EncodeToString(k)),
			[]byte(strings.ToUpper(hex.EncodeToString(k))))
	}
	return out
}

// FuzzVerifyCRL checks that VerifyCRL never panics on arbitrary bytes,
// and that a CRL it accepts is exactly the bytes given, is signed by the
// CA, and verifies again.
func FuzzVerifyCRL(f *testing.F) {
	fx := newFuzzCA(f)
	caCert := fx.a.Certificate()
	revoked, err := fx.a.Revoke("carol", ca.ReasonKeyCompromise)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(revoked.Raw)
	f.Add(append(bytes.Clone(revoked.Raw), 0))
	f.Add(revoked.Raw[:len(revoked.Raw)-1])
	now := time.Now().UTC().Truncate(time.Second)
	entry := x509.RevocationListEntry{SerialNumber: big.NewInt(7), RevocationTime: now}
	f.Add(fx.signCRL(f, &x509.RevocationList{
		Number: big.NewInt(9), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{entry, entry},
	}))
	f.Add(fx.signCRL(f, &x509.RevocationList{Number: big.NewInt(0), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}))
	f.Add(fx.signCRL(f, &x509.RevocationList{Number: big.NewInt(3), ThisUpdate: now, NextUpdate: now}))
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})

	f.Fuzz(func(t *testing.T, der []byte) {
		crl, err := ca.VerifyCRL(der, caCert)
		if err != nil {
			if crl != nil {
				t.Fatal("VerifyCRL returned a CRL with its error")
			}
			return
		}
		if !bytes.Equal(crl.Raw, der) {
			t.Fatalf("VerifyCRL accepted %d bytes, but the CRL is %d", len(der), len(crl.Raw))
		}
		if err := crl.CheckSignatureFrom(caCert); err != nil {
			t.Fatalf("VerifyCRL accepted a CRL the CA did not sign: %v", err)
		}
		if crl.Number == nil || crl.Number.Sign() <= 0 {
			t.Fatalf("VerifyCRL accepted CRL number %v", crl.Number)
		}
		again, err := ca.VerifyCRL(crl.Raw, caCert)
		if err != nil {
			t.Fatalf("accepted CRL does not verify again: %v", err)
		}
		if again.Number.Cmp(crl.Number) != 0 {
			t.Fatalf("second verification returned CRL %s, want %s", again.Number, crl.Number)
		}
	})
}

// memStream is an in-memory network.Stream from one remote peer: reads
// come from a fixed byte string and writes collect in a buffer. The
// embedded nil Stream makes any method not defined here panic, so a
// handler that starts to use one fails the fuzz target loudly.
type memStream struct {
	network.Stream
	in                         *bytes.Reader
	out                        bytes.Buffer
	conn                       memConn
	closed, reset, writeClosed bool
}

// memConn is the connection of a memStream. Like memStream, it panics on
// the methods it does not define.
type memConn struct {
	network.Conn
	local, remote peer.ID
}

func (c memConn) LocalPeer() peer.ID  { return c.local }
func (c memConn) RemotePeer() peer.ID { return c.remote }

var errStreamReset = errors.New("stream reset")

func (s *memStream) Read(p []byte) (int, error) {
	if s.reset || s.closed {
		return 0, errStreamReset
	}
	return s.in.Read(p)
}

func (s *memStream) Write(p []byte) (int, error) {
	if s.reset || s.closed || s.writeClosed {
		return 0, errStreamReset
	}
	return s.out.Write(p)
}

func (s *memStream) Close() error                                 { s.closed = true; return nil }
func (s *memStream) CloseWrite() error                            { s.writeClosed = true; return nil }
func (s *memStream) CloseRead() error                             { return nil }
func (s *memStream) Reset() error                                 { s.reset = true; return nil }
func (s *memStream) ResetWithError(network.StreamErrorCode) error { return s.Reset() }
func (s *memStream) SetDeadline(time.Time) error                  { return nil }
func (s *memStream) SetReadDeadline(time.Time) error              { return nil }
func (s *memStream) SetWriteDeadline(time.Time) error             { return nil }
func (s *memStream) Conn() network.Conn                           { return s.conn }

// streamHandler is one of the CA's stream handlers, with the check of
// the response it wrote.
type streamHandler struct {
	name        string
	serve       func(network.Stream)
	maxResponse int
	check       func(t *testing.T, frame []byte)
}

// FuzzHandleRequests feeds arbitrary bytes, as alice's peer, to the CA's
// stream handlers. Each must return without panicking and close or
// reset the stream. Unless it reset the stream without writing, it must
// leave exactly one response frame that the client can read and decode.
func FuzzHandleRequests(f *testing.F) {
	fx := newFuzzCA(f)
	caCert := fx.a.Certificate()
	handlers := fx.streamHandlers(caCert)
	conn := memConn{local: caPeerID(f, fx.a), remote: fx.alice.peer}

	frameOf := func(v any) []byte {
		var b bytes.Buffer
		if err := protocol.WriteJSON(&b, v); err != nil {
			f.Fatal(err)
		}
		return b.Bytes()
	}
	revokeCarol := protocol.RevokeRequest{
		Certificate: fx.carol.cert.Raw,
		Reason:      ca.ReasonKeyCompromise,
		Signature:   ed25519.Sign(fx.carol.key, protocol.RevokeMessage(fx.carol.cert.Raw, ca.ReasonKeyCompromise)),
	}
	f.Add(byte(0), frameOf(protocol.EnrollRequest{CSR: fx.alice.csr}))
	f.Add(byte(0), frameOf(protocol.EnrollRequest{CSR: fx.bob.csr, Token: "x"}))
	f.Add(byte(0), []byte{0, 0, 0xff, 0xff, '{'})
	f.Add(byte(1), frameOf(protocol.DirectoryRequest{Announce: []string{"/ip4/127.0.0.1/tcp/4002"}, Lookup: "bob"}))
	f.Add(byte(1), frameOf(protocol.DirectoryRequest{Announce: []string{"not a multiaddr"}}))
	f.Add(byte(1), frameOf(protocol.DirectoryRequest{Lookup: "nobody"}))
	f.Add(byte(2), frameOf(revokeCarol))
	f.Add(byte(2), frameOf(protocol.RevokeRequest{Certificate: []byte{0x30}, Signature: []byte{1}}))
	f.Add(byte(3), frameOf(protocol.StatusRequest{Serial: ca.SerialString(fx.bob.cert.SerialNumber)}))
	f.Add(byte(3), frameOf(protocol.StatusRequest{Serial: "alice"}))
	f.Add(byte(3), []byte(`{"serial":"01"}`))

	f.Fuzz(func(t *testing.T, which byte, stream []byte) {
		h := handlers[int(which)%len(handlers)]
		s := &memStream{in: bytes.NewReader(stream), conn: conn}
		h.serve(s)
		if !s.closed && !s.reset {
			t.Fatalf("%s neither closed nor reset the stream", h.name)
		}
		if s.reset && s.out.Len() == 0 {
			return
		}
		r := bytes.NewReader(s.out.Bytes())
		frame, err := protocol.ReadFrame(r, h.maxResponse)
		if err != nil {
			t.Fatalf("%s wrote %d bytes the client cannot read as a response: %v", h.name, s.out.Len(), err)
		}
		if r.Len() != 0 {
			t.Fatalf("%s wrote %d bytes after its response", h.name, r.Len())
		}
		h.check(t, frame)
	})
}

// streamHandlers returns the CA's four stream handlers with the checks
// of their responses to alice's peer.
func (c *fuzzCA) streamHandlers(caCert *x509.Certificate) []streamHandler {
	return []streamHandler{
		{"HandleEnroll", c.a.HandleEnroll, protocol.MaxEnrollResponseSize, func(t *testing.T, frame []byte) {
			cert, caCert2, err := protocol.DecodeEnrollResponse(frame)
			if rejectedOrFail(t, "enrollment", err) {
				return
			}
			if !bytes.Equal(caCert2.Raw, caCert.Raw) {
				t.Fatal("enrollment response carries another CA certificate")
			}
			if err := cert.CheckSignatureFrom(caCert); err != nil {
				t.Fatalf("issued certificate is not signed by the CA: %v", err)
			}
			if p, err := protocol.CertPeerID(cert); err != nil || p != c.alice.peer {
				t.Fatalf("issued a certificate for peer %s (%v) to peer %s", p, err, c.alice.peer)
			}
		}},
		{"HandleDirectory", c.a.HandleDirectory, protocol.MaxDirectoryResponseSize, func(t *testing.T, frame []byte) {
			resp, err := protocol.DecodeDirectoryResponse(frame)
			if rejectedOrFail(t, "directory", err) || len(resp.Certificate) == 0 {
				return
			}
			cert, err := x509.ParseCertificate(resp.Certificate)
			if err != nil {
				t.Fatalf("directory returned a certificate that does not parse: %v", err)
			}
			if err := cert.CheckSignatureFrom(caCert); err != nil {
				t.Fatalf("directory returned a certificate the CA did not sign: %v", err)
			}
		}},
		{"HandleRevoke", c.a.HandleRevoke, protocol.MaxRevokeResponseSize, func(t *testing.T, frame []byte) {
			resp, err := protocol.DecodeRevokeResponse(frame)
			if rejectedOrFail(t, "revocation", err) {
				return
			}
			if resp.CRLNumber == "" {
				t.Fatal("revocation response has neither a CRL number nor an error")
			}
		}},
		{"HandleStatus", c.a.HandleStatus, protocol.MaxStatusResponseSize, func(t *testing.T, frame []byte) {
			resp, err := protocol.DecodeStatusResponse(frame)
			if rejectedOrFail(t, "status", err) {
				return
			}
			if err := ca.VerifyStatus(resp, caCert); err != nil {
				t.Fatalf("status answer: %v", err)
			}
		}},
	}
}

// rejectedOrFail reports whether err is a rejection by the CA, and fails
// the test if err is any other error, which means the CA wrote a
// malformed response.
func rejectedOrFail(t *testing.T, what string, err error) bool {
	t.Helper()
	var rejected *protocol.Error
	if errors.As(err, &rejected) {
		return true
	}
	if err != nil {
		t.Fatalf("CA wrote a malformed %s response: %v", what, err)
	}
	return false
}

// caPeerID returns the peer ID of the CA's libp2p host.
func caPeerID(t testing.TB, a *ca.Authority) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(a.PeerKey())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// FuzzAPIHandler sends arbitrary requests, parsed from the wire as the
// local API server parses them, to the CA's local API handler. It must
// never panic, never answer with a 5xx status, and never put a private
// key in a response.
func FuzzAPIHandler(f *testing.F) {
	fx := newFuzzCA(f)
	handler := http.MaxBytesHandler(ca.NewAPIHandler(fx.a), localapi.MaxRequestSize)
	secrets := fx.secrets(f)

	f.Add("POST", "/v1/tokens", []byte(`{"user":"dave","ttl_seconds":3600}`))
	f.Add("POST", "/v1/tokens", []byte(`{"user":"dave","ttl_seconds":9223372036854775807}`))
	f.Add("POST", "/v1/revoke", []byte(`{"target":"carol","reason":1}`))
	f.Add("POST", "/v1/revoke", []byte(`{"target":"0x01","reason":6}`))
	f.Add("GET", "/v1/crl", []byte{})
	f.Add("GET", "/v1/issued", []byte{})
	f.Add("GET", "/v1/certificate", []byte{})
	f.Add("DELETE", "/v1/../v1/tokens", []byte(`{"user":`))
	f.Add("POST", "/v1/tokens?x=1", []byte(`{"user":"eve"} {"user":"eve"}`))

	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: skm\r\nContent-Length: %d\r\n\r\n", method, target, len(body))
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(raw), bytes.NewReader(body))))
		if err != nil {
			// The server answers a request it cannot parse itself.
			return
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", method, target, rec.Code, rec.Body)
		}
		out := rec.Body.Bytes()
		if bytes.Contains(out, []byte("PRIVATE KEY")) {
			t.Fatalf("%s %q: response contains a PEM private key", method, target)
		}
		for _, s := range secrets {
			if bytes.Contains(out, s) {
				t.Fatalf("%s %q: response contains CA key material", method, target)
			}
		}
	})
}
