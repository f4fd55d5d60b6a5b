package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// exchangeTimeout bounds one enrollment exchange in these tests.
const exchangeTimeout = 20 * time.Second

// syncBuffer is a log destination that the handler goroutines and the
// test can use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// transport is the libp2p transport of the CA and client hosts in a test.
type transport struct {
	name   string
	option libp2p.Option
	listen string
}

var (
	tcpTransport  = transport{"tcp", libp2p.Transport(tcp.NewTCPTransport), "/ip4/127.0.0.1/tcp/0"}
	quicTransport = transport{"quic", libp2p.Transport(quic.NewTransport), "/ip4/127.0.0.1/udp/0/quic-v1"}
)

// newHost starts a libp2p host with one transport and the security and
// muxers of node.NewHost. The package node is not used so that these
// tests depend only on what package ca imports.
func newHost(t *testing.T, key p2pcrypto.PrivKey, tr transport, listen libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.Identity(key),
		tr.option,
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		listen,
	)
	if err != nil {
		t.Fatalf("start libp2p host: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// caServer is a CA serving enrollment on a libp2p host on loopback.
type caServer struct {
	a         *ca.Authority
	st        *store.Store
	clock     *testClock
	host      host.Host
	transport transport
	log       *syncBuffer
}

// startCA starts a CA that serves enrollment over TCP.
func startCA(t *testing.T, cfg ca.Config) *caServer {
	t.Helper()
	return startCAOn(t, cfg, tcpTransport)
}

func startCAOn(t *testing.T, cfg ca.Config, tr transport) *caServer {
	t.Helper()
	log := &syncBuffer{}
	cfg.Log = slog.New(slog.NewTextHandler(log, nil))
	a, st, clock := newAuthority(t, cfg)
	h := newHost(t, a.PeerKey(), tr, libp2p.ListenAddrStrings(tr.listen))
	h.SetStreamHandler(protocol.EnrollID, a.HandleEnroll)
	return &caServer{a: a, st: st, clock: clock, host: h, transport: tr, log: log}
}

// clientHost returns the libp2p host of e, connected to the CA.
func (s *caServer) clientHost(t *testing.T, e *enrollee) host.Host {
	t.Helper()
	if *e.host == nil {
		*e.host = newHost(t, e.peerKey, s.transport, libp2p.NoListenAddrs)
	}
	h := *e.host
	ctx, cancel := context.WithTimeout(context.Background(), exchangeTimeout)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: s.host.ID(), Addrs: s.host.Addrs()}); err != nil {
		t.Fatalf("connect to the CA: %v", err)
	}
	return h
}

// exchange opens an enrollment stream from e's host, runs write on it
// while it reads the CA's response, and returns the response or the read
// error, such as a stream reset.
func (s *caServer) exchange(t *testing.T, e *enrollee, write func(network.Stream) error) (*protocol.EnrollResponse, error) {
	t.Helper()
	h := s.clientHost(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), exchangeTimeout)
	defer cancel()
	str, err := h.NewStream(ctx, s.host.ID(), protocol.EnrollID)
	if err != nil {
		t.Fatalf("open enrollment stream: %v", err)
	}
	str.SetDeadline(time.Now().Add(exchangeTimeout))
	written := make(chan error, 1)
	go func() { written <- write(str) }()
	frame, readErr := protocol.ReadFrame(str, protocol.MaxEnrollResponseSize)
	if readErr != nil {
		str.Reset()
	}
	if err := <-written; err != nil {
		t.Logf("write request: %v", err)
	}
	str.Close()
	if readErr != nil {
		return nil, readErr
	}
	var resp protocol.EnrollResponse
	if err := protocol.DecodeJSON(frame, &resp); err != nil {
		t.Fatalf("decode the CA's response: %v", err)
	}
	return &resp, nil
}

// writeBytes returns a request writer that sends p and closes the write
// side of the stream.
func writeBytes(p []byte) func(network.Stream) error {
	return func(s network.Stream) error {
		if _, err := s.Write(p); err != nil {
			return err
		}
		return s.CloseWrite()
	}
}

func frameOf(t *testing.T, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := protocol.WriteFrame(&buf, payload); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeRequest(t *testing.T, req protocol.EnrollRequest) func(network.Stream) error {
	t.Helper()
	var buf bytes.Buffer
	if err := protocol.WriteJSON(&buf, req); err != nil {
		t.Fatal(err)
	}
	return writeBytes(buf.Bytes())
}

// send sends req from e's host and returns the CA's response.
func (s *caServer) send(t *testing.T, e *enrollee, req protocol.EnrollRequest) *protocol.EnrollResponse {
	t.Helper()
	resp, err := s.exchange(t, e, writeRequest(t, req))
	if err != nil {
		t.Fatalf("enrollment exchange for %s: %v", e.user, err)
	}
	return resp
}

// checkIssued checks that resp carries a certificate for e signed by the
// CA, and returns it.
func (s *caServer) checkIssued(t *testing.T, e *enrollee, resp *protocol.EnrollResponse) *x509.Certificate {
	t.Helper()
	if resp.Error != nil {
		t.Fatalf("enrollment of %s rejected: %v", e.user, resp.Error)
	}
	if !bytes.Equal(resp.CACertificate, s.a.Certificate().Raw) {
		t.Error("response carries another CA certificate")
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		t.Fatalf("parse issued certificate: %v", err)
	}
	if err := cert.CheckSignatureFrom(s.a.Certificate()); err != nil {
		t.Errorf("issued certificate does not verify under the CA: %v", err)
	}
	id, err := protocol.CertIdentity(cert)
	if err != nil {
		t.Fatalf("CertIdentity: %v", err)
	}
	if id != e.identity() {
		t.Errorf("issued certificate binds %+v, want %+v", id, e.identity())
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(e.key.Public()) {
		t.Error("issued certificate certifies another key")
	}
	return cert
}

// enroll runs an honest enrollment of e with a fresh token and fails the
// test unless it succeeds.
func (s *caServer) enroll(t *testing.T, e *enrollee) *x509.Certificate {
	t.Helper()
	resp := s.send(t, e, protocol.EnrollRequest{CSR: e.csr(t), Token: newToken(t, s.a, e.user)})
	return s.checkIssued(t, e, resp)
}

// checkResponseCode fails the test unless resp is a rejection with code.
func checkResponseCode(t *testing.T, resp *protocol.EnrollResponse, code protocol.Code) {
	t.Helper()
	if resp.Error == nil {
		t.Fatalf("request accepted, want rejection %s", code)
	}
	if resp.Error.Code != code {
		t.Fatalf("rejection %s (%s), want %s", resp.Error.Code, resp.Error.Message, code)
	}
	if len(resp.Certificate) > 0 || len(resp.CACertificate) > 0 {
		t.Error("rejection carries certificates")
	}
}

func csrTemplate(id protocol.Identity) *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: id.User}, URIs: id.URIs()}
}

// sender is the request of a test case: the enrollee whose host sends it
// and the function that writes it.
type sender struct {
	from  *enrollee
	write func(network.Stream) error
}

// TestEnrollRejects runs over QUIC too, because a stream reset there
// discards a response that was written but not yet delivered.
func TestEnrollRejects(t *testing.T) {
	for _, tr := range []transport{tcpTransport, quicTransport} {
		t.Run(tr.name, func(t *testing.T) { testEnrollRejects(t, tr) })
	}
}

func testEnrollRejects(t *testing.T, tr transport) {
	s := startCAOn(t, ca.Config{}, tr)
	request := func(t *testing.T, e *enrollee, req protocol.EnrollRequest) sender {
		return sender{e, writeRequest(t, req)}
	}
	withToken := func(t *testing.T, e *enrollee, csr []byte) sender {
		return request(t, e, protocol.EnrollRequest{CSR: csr, Token: newToken(t, s.a, e.user)})
	}
	modifiedCSR := func(t *testing.T, e *enrollee, modify func(*x509.CertificateRequest)) sender {
		tmpl := csrTemplate(e.identity())
		modify(tmpl)
		return withToken(t, e, createCSR(t, e.key, tmpl))
	}
	// partialFrame declares a 100-byte frame and sends 10 bytes of it.
	partialFrame := append(binary.BigEndian.AppendUint32(nil, 100), "{\"csr\":\"AA"...)

	tests := []struct {
		name string
		code protocol.Code
		// resetOK accepts a reset stream in place of the response. With
		// an empty code, no response is expected at all.
		resetOK bool
		// prepare sets up the case and returns the request to send. The
		// store is compared from after prepare to after the request.
		prepare func(t *testing.T) sender
	}{
		{name: "unknown token", code: protocol.CodeBadToken, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "alice")
			return request(t, e, protocol.EnrollRequest{CSR: e.csr(t), Token: "eW91IGd1ZXNzZWQgYSB0b2tlbiB0aGF0IGRvZXMgbm90IGV4aXN0"})
		}},
		{name: "expired token", code: protocol.CodeTokenExpired, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "bob")
			tok, err := s.a.NewToken(e.user, ca.MinTokenTTL)
			if err != nil {
				t.Fatal(err)
			}
			s.clock.Advance(ca.MinTokenTTL + time.Second)
			return request(t, e, protocol.EnrollRequest{CSR: e.csr(t), Token: tok.Value})
		}},
		{name: "reused token", code: protocol.CodeTokenUsed, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "carol")
			req := protocol.EnrollRequest{CSR: e.csr(t), Token: newToken(t, s.a, e.user)}
			s.checkIssued(t, e, s.send(t, e, req))
			return request(t, e, req)
		}},
		{name: "token for another user", code: protocol.CodeBadToken, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "dave")
			return request(t, e, protocol.EnrollRequest{CSR: e.csr(t), Token: newToken(t, s.a, "dave2")})
		}},
		{name: "missing token", code: protocol.CodeBadToken, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "erin")
			return request(t, e, protocol.EnrollRequest{CSR: e.csr(t)})
		}},
		{name: "name taken by another key", code: protocol.CodeNameTaken, prepare: func(t *testing.T) sender {
			s.enroll(t, newEnrollee(t, "frank"))
			e := newEnrollee(t, "frank")
			return withToken(t, e, e.csr(t))
		}},
		{name: "malformed CSR bytes", code: protocol.CodeBadRequest, prepare: func(t *testing.T) sender {
			return withToken(t, newEnrollee(t, "grace"), []byte("not a certificate request"))
		}},
		{name: "CSR signature byte flipped", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "heidi")
			csr := e.csr(t)
			// An Ed25519 CSR ends with its signature.
			csr[len(csr)-1] ^= 0x01
			return withToken(t, e, csr)
		}},
		{name: "CSR names another peer", code: protocol.CodePeerMismatch, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "ivan")
			other := newEnrollee(t, "ivan")
			return withToken(t, e, createCSR(t, e.key, csrTemplate(other.identity())))
		}},
		{name: "ECDSA key in CSR", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "judy")
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return withToken(t, e, createCSR(t, key, csrTemplate(e.identity())))
		}},
		{name: "CSR asks for DNS name", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			return modifiedCSR(t, newEnrollee(t, "karl"), func(r *x509.CertificateRequest) {
				r.DNSNames = []string{"karl.example.com"}
			})
		}},
		{name: "CSR asks for email address", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			return modifiedCSR(t, newEnrollee(t, "lena"), func(r *x509.CertificateRequest) {
				r.EmailAddresses = []string{"lena@example.com"}
			})
		}},
		{name: "CSR asks for IP address", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			return modifiedCSR(t, newEnrollee(t, "mike"), func(r *x509.CertificateRequest) {
				r.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			})
		}},
		{name: "CSR without skm URIs", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			return modifiedCSR(t, newEnrollee(t, "nina"), func(r *x509.CertificateRequest) {
				r.URIs = []*url.URL{mustParseURL(t, "https://example.com/nina")}
			})
		}},
		{name: "CSR with invalid user name", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			return modifiedCSR(t, newEnrollee(t, "oscar"), func(r *x509.CertificateRequest) {
				r.Subject.CommonName = "Oscar"
			})
		}},
		{name: "first key version 2", code: protocol.CodeBadCSR, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "peggy").withVersion(t, "peggy", 2)
			return withToken(t, e, e.csr(t))
		}},
		{name: "peer certified for another user", code: protocol.CodePeerMismatch, prepare: func(t *testing.T) sender {
			first := newEnrollee(t, "quinn")
			s.enroll(t, first)
			e := first.withVersion(t, "rupert", 1)
			return withToken(t, e, e.csr(t))
		}},
		{name: "token over maximum length", code: protocol.CodeBadRequest, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "sybil")
			token := strings.Repeat("A", protocol.MaxTokenLength+1)
			return request(t, e, protocol.EnrollRequest{CSR: e.csr(t), Token: token})
		}},
		{name: "unknown request field", code: protocol.CodeBadRequest, prepare: func(t *testing.T) sender {
			e := newEnrollee(t, "trent")
			body := fmt.Sprintf(`{"csr":"%s","token":"%s","admin":true}`,
				base64.StdEncoding.EncodeToString(e.csr(t)), newToken(t, s.a, e.user))
			return sender{e, writeBytes(frameOf(t, []byte(body)))}
		}},
		{name: "garbage frame body", code: protocol.CodeBadRequest, prepare: func(t *testing.T) sender {
			garbage := make([]byte, 256)
			rand.Read(garbage)
			return sender{newEnrollee(t, "ursula"), writeBytes(frameOf(t, garbage))}
		}},
		{name: "frame one byte over max", code: protocol.CodeBadRequest, resetOK: true,
			prepare: func(t *testing.T) sender {
				payload := bytes.Repeat([]byte{' '}, protocol.MaxEnrollRequestSize+1)
				return sender{newEnrollee(t, "victor"), writeBytes(frameOf(t, payload))}
			}},
		{name: "one mebibyte frame", code: protocol.CodeBadRequest, resetOK: true,
			prepare: func(t *testing.T) sender {
				payload := bytes.Repeat([]byte{'x'}, 1<<20)
				return sender{newEnrollee(t, "walter"), writeBytes(frameOf(t, payload))}
			}},
		{name: "unframed garbage bytes", code: protocol.CodeBadRequest, resetOK: true,
			prepare: func(t *testing.T) sender {
				return sender{newEnrollee(t, "xavier"), writeBytes([]byte("GET / HTTP/1.1\r\nHost: ca\r\n\r\n"))}
			}},
		{name: "empty request stream", code: protocol.CodeBadRequest, prepare: func(t *testing.T) sender {
			return sender{newEnrollee(t, "yvonne"), writeBytes(nil)}
		}},
		{name: "stream closed mid-request", code: protocol.CodeBadRequest, prepare: func(t *testing.T) sender {
			return sender{newEnrollee(t, "zoe"), writeBytes(partialFrame)}
		}},
		{name: "stream reset mid-request", resetOK: true, prepare: func(t *testing.T) sender {
			return sender{newEnrollee(t, "zack"), func(s network.Stream) error {
				if _, err := s.Write(partialFrame); err != nil {
					return err
				}
				return s.Reset()
			}}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.prepare(t)
			before := takeSnapshot(t, s.st)
			logStart := len(s.log.String())

			resp, err := s.exchange(t, req.from, req.write)
			switch {
			case err != nil && !tc.resetOK:
				t.Errorf("exchange failed: %v, want rejection %s", err, tc.code)
			case err != nil:
				t.Logf("no response: %v", err)
			case err == nil && tc.code == "":
				t.Errorf("CA answered %+v, want no response", resp)
			case err == nil:
				checkResponseCode(t, resp, tc.code)
				logged := s.log.String()[logStart:]
				if !strings.Contains(logged, "enrollment rejected") || !strings.Contains(logged, "code="+string(tc.code)) {
					t.Errorf("CA log lacks the rejection with code %s:\n%s", tc.code, logged)
				}
			}
			checkUnchanged(t, before, takeSnapshot(t, s.st))

			// The CA keeps serving honest nodes.
			s.enroll(t, newEnrollee(t, fmt.Sprintf("good%d", i)))
		})
	}
}

func TestEnrollIssuesOverLibp2p(t *testing.T) {
	s := startCA(t, ca.Config{})
	e := newEnrollee(t, "alice")
	cert := s.enroll(t, e)
	list, err := s.a.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 || list[0].Serial != ca.SerialString(cert.SerialNumber) || list[0].User != "alice" {
		t.Errorf("List returned %+v, want the one certificate issued", list)
	}
	if !strings.Contains(s.log.String(), "certificate issued") {
		t.Errorf("CA log lacks the issuance:\n%s", s.log.String())
	}
}

func TestEnrollRenewsSameKey(t *testing.T) {
	s := startCA(t, ca.Config{})
	e := newEnrollee(t, "alice")
	first := s.enroll(t, e)
	second := s.enroll(t, e)
	if first.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Error("renewal reused the serial number")
	}
	list, err := s.a.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 2 {
		t.Errorf("List returned %d certificates, want 2", len(list))
	}
}

func TestEnrollOpenMode(t *testing.T) {
	s := startCA(t, ca.Config{Open: true})
	alice := newEnrollee(t, "alice")
	s.checkIssued(t, alice, s.send(t, alice, protocol.EnrollRequest{CSR: alice.csr(t)}))

	before := takeSnapshot(t, s.st)
	imposter := newEnrollee(t, "alice")
	resp := s.send(t, imposter, protocol.EnrollRequest{CSR: imposter.csr(t)})
	checkResponseCode(t, resp, protocol.CodeNameTaken)
	checkUnchanged(t, before, takeSnapshot(t, s.st))

	bob := newEnrollee(t, "bob")
	s.checkIssued(t, bob, s.send(t, bob, protocol.EnrollRequest{CSR: bob.csr(t)}))
}

func TestEnrollContinuity(t *testing.T) {
	s := startCA(t, ca.Config{})
	v1 := newEnrollee(t, "carol")
	s.enroll(t, v1)
	v2 := v1.withVersion(t, "carol", 2)
	v3 := v1.withVersion(t, "carol", 3)
	// A new device: another peer that takes over with the next version.
	moved := newEnrollee(t, "carol").withVersion(t, "carol", 3)

	sign := func(key ed25519.PrivateKey, csr []byte) []byte {
		return ed25519.Sign(key, ca.ContinuityMessage(csr))
	}
	flipped := func(sig []byte) []byte {
		sig = bytes.Clone(sig)
		sig[0] ^= 0x01
		return sig
	}
	csr1, csr2, csr3, csrMoved := v1.csr(t), v2.csr(t), v3.csr(t), moved.csr(t)

	steps := []struct {
		name       string
		from       *enrollee
		csr        []byte
		continuity []byte
		code       protocol.Code // empty for a certificate
	}{
		{"no continuity signature", v2, csr2, nil, protocol.CodeNameTaken},
		{"continuity by the new key", v2, csr2, sign(v2.key, csr2), protocol.CodeNameTaken},
		{"continuity over another CSR", v2, csr2, sign(v1.key, csr3), protocol.CodeNameTaken},
		{"continuity without the label", v2, csr2, ed25519.Sign(v1.key, csr2), protocol.CodeNameTaken},
		{"continuity with flipped byte", v2, csr2, flipped(sign(v1.key, csr2)), protocol.CodeNameTaken},
		{"continuity of wrong length", v2, csr2, sign(v1.key, csr2)[:32], protocol.CodeNameTaken},
		{"version 3 skips version 2", v3, csr3, sign(v1.key, csr3), protocol.CodeBadCSR},
		{"valid continuity to version 2", v2, csr2, sign(v1.key, csr2), ""},
		// A successor supersedes, and so revokes, the certificate before
		// it: the retired key can never be certified again.
		{"retired version 1 key", v1, csr1, nil, protocol.CodeKeyRevoked},
		{"retired key vouches again", v3, csr3, sign(v1.key, csr3), protocol.CodeNameTaken},
		{"new peer with continuity", moved, csrMoved, sign(v2.key, csrMoved), ""},
		{"retired version 2 key", v2, csr2, nil, protocol.CodeKeyRevoked},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			// List orders certificates by NotBefore, which has a
			// resolution of one second.
			s.clock.Advance(time.Second)
			req := protocol.EnrollRequest{CSR: step.csr, Token: newToken(t, s.a, "carol"), Continuity: step.continuity}
			// Creating the token changes the token table, so the
			// snapshot to compare against is taken after it.
			before := takeSnapshot(t, s.st)
			resp := s.send(t, step.from, req)
			if step.code != "" {
				checkResponseCode(t, resp, step.code)
				checkUnchanged(t, before, takeSnapshot(t, s.st))
				return
			}
			cert := s.checkIssued(t, step.from, resp)
			list, err := s.a.List()
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			newest := list[len(list)-1]
			if newest.Serial != ca.SerialString(cert.SerialNumber) || newest.KeyVersion != step.from.version {
				t.Errorf("newest listed certificate is %+v, want serial %s version %d",
					newest, ca.SerialString(cert.SerialNumber), step.from.version)
			}
		})
	}
}

func TestConcurrentClaimsOneWinner(t *testing.T) {
	a, st, _ := newAuthority(t, ca.Config{Open: true})
	const claimants = 4
	var csrs []*x509.CertificateRequest
	var claimers []*enrollee
	for range claimants {
		e := newEnrollee(t, "zed")
		claimers = append(claimers, e)
		csrs = append(csrs, parseCSR(t, e.csr(t)))
	}
	errs := make([]error, claimants)
	var wg sync.WaitGroup
	for i, e := range claimers {
		wg.Go(func() {
			_, errs[i] = a.Issue(ca.Request{Peer: e.peer, CSR: csrs[i]})
		})
	}
	wg.Wait()

	winners := 0
	for _, err := range errs {
		if err == nil {
			winners++
			continue
		}
		checkCode(t, err, protocol.CodeNameTaken)
	}
	if winners != 1 {
		t.Errorf("%d claimants got the name, want 1", winners)
	}
	if n := len(takeSnapshot(t, st)[store.Issued]); n != 1 {
		t.Errorf("CA recorded %d certificates, want 1", n)
	}
}
