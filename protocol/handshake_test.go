package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A libp2p stream is what the node runs sessions on.
var _ Conn = network.Stream(nil)

// shortStepTimeout is the step timeout of tests in which a side waits
// for a message that never comes.
const shortStepTimeout = 200 * time.Millisecond

// testCA is a CA made the way ca.Authority makes one, so that tests need
// not import the ca package.
type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// issue returns credentials for user on peer p, valid from notBefore to
// notAfter, with the profile of ca/issue.go.
func (ca *testCA) issue(t testing.TB, user string, p peer.ID, notBefore, notAfter time.Time) Credentials {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: user},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  Identity{User: user, KeyVersion: 1, PeerID: p}.URIs(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return Credentials{Cert: cert, Key: key}
}

// verifier returns a VerifyPeer that does what the node's does: the
// certificate chains to ca, is valid at now() and names remote.
func (ca *testCA) verifier(remote peer.ID, now func() time.Time) func(*x509.Certificate) error {
	return func(cert *x509.Certificate) error {
		roots := x509.NewCertPool()
		roots.AddCert(ca.cert)
		_, err := cert.Verify(x509.VerifyOptions{
			Roots:       roots,
			CurrentTime: now(),
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return err
		}
		named, err := CertPeerID(cert)
		if err != nil {
			return err
		}
		if named != remote {
			return errors.New("certificate names another peer")
		}
		return nil
	}
}

func newTestPeerID(t testing.TB) peer.ID {
	t.Helper()
	key, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// testNode is an enrolled node: a peer ID and credentials naming it.
type testNode struct {
	peer  peer.ID
	creds Credentials
}

// fixture holds a CA with three enrolled nodes, a node enrolled with
// another CA, and the time at which the certificates are checked.
type fixture struct {
	ca, otherCA              *testCA
	alice, bob, mallory      testNode
	eve                      testNode // enrolled with otherCA
	now                      time.Time
	notBefore, notAfter      time.Time
	expiredBob, expiredAlice testNode
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		ca:      newTestCA(t, "skm test CA"),
		otherCA: newTestCA(t, "other CA"),
		now:     time.Now(),
	}
	f.notBefore, f.notAfter = f.now.Add(-time.Hour), f.now.Add(24*time.Hour)
	f.alice = f.node(t, f.ca, "alice", f.notBefore, f.notAfter)
	f.bob = f.node(t, f.ca, "bob", f.notBefore, f.notAfter)
	f.mallory = f.node(t, f.ca, "mallory", f.notBefore, f.notAfter)
	f.eve = f.node(t, f.otherCA, "eve", f.notBefore, f.notAfter)
	past := f.now.Add(-48 * time.Hour)
	f.expiredBob = testNode{peer: f.bob.peer,
		creds: f.ca.issue(t, "bob", f.bob.peer, past, f.now.Add(-time.Hour))}
	f.expiredAlice = testNode{peer: f.alice.peer,
		creds: f.ca.issue(t, "alice", f.alice.peer, past, f.now.Add(-time.Hour))}
	return f
}

func (f *fixture) node(t testing.TB, ca *testCA, user string, notBefore, notAfter time.Time) testNode {
	t.Helper()
	p := newTestPeerID(t)
	return testNode{peer: p, creds: ca.issue(t, user, p, notBefore, notAfter)}
}

// config returns the configuration of local in a session with remote,
// verifying remote's certificate against f.ca at f.now.
func (f *fixture) config(local, remote testNode) HandshakeConfig {
	return HandshakeConfig{
		Local:      local.creds,
		LocalPeer:  local.peer,
		RemotePeer: remote.peer,
		VerifyPeer: f.ca.verifier(remote.peer, func() time.Time { return f.now }),
	}
}

// side runs one side of a handshake on a conn.
type side func(Conn) (*Session, error)

func initiator(cfg HandshakeConfig) side {
	return func(c Conn) (*Session, error) { return Initiate(c, cfg) }
}

func responder(cfg HandshakeConfig) side {
	return func(c Conn) (*Session, error) { return Respond(c, cfg) }
}

// rogue runs a side without the local configuration checks, to play a
// peer that presents credentials it should not.
func rogue(cfg HandshakeConfig, r role) side {
	return func(c Conn) (*Session, error) { return runHandshake(c, cfg, r) }
}

// outcome is what each side of a handshake returned.
type outcome struct {
	initiator, responder       *Session
	initiatorErr, responderErr error
}

// handshakeOver runs both sides on the two ends of a connection. A side
// that fails closes its end, as a node resets the stream.
func handshakeOver(c1, c2 net.Conn, initiate, respond side) outcome {
	var o outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.responder, o.responderErr = respond(c2)
		if o.responderErr != nil {
			c2.Close()
		}
	}()
	o.initiator, o.initiatorErr = initiate(c1)
	if o.initiatorErr != nil {
		c1.Close()
	}
	<-done
	return o
}

// pipe returns both ends of a net.Pipe, closed when the test ends.
func pipe(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	c1, c2 := net.Pipe()
	t.Cleanup(func() {
		c1.Close()
		c2.Close()
	})
	return c1, c2
}

func handshakePipe(t testing.TB, initiate, respond side) outcome {
	t.Helper()
	c1, c2 := pipe(t)
	return handshakeOver(c1, c2, initiate, respond)
}

// frameFilter is called with each frame that a relay forwards. from is
// the side that sent it, and n counts the frames from that side, from 1.
// It may alter the frame in place, and it drops the frame by returning
// false.
type frameFilter func(from role, n int, frame []byte) bool

// relay returns the ends on which the initiator and the responder run,
// with filter between them. A side that closes its end does not close
// the other, so the other side receives only what filter lets through.
func relay(t testing.TB, filter frameFilter) (initiatorEnd, responderEnd net.Conn) {
	t.Helper()
	i, fromI := net.Pipe()
	r, fromR := net.Pipe()
	var wg sync.WaitGroup
	forward := func(src, dst net.Conn, from role) {
		defer wg.Done()
		for n := 1; ; n++ {
			frame, err := ReadFrame(src, 1<<20)
			if err != nil {
				return
			}
			if !filter(from, n, frame) {
				continue
			}
			if err := WriteFrame(dst, frame); err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go forward(fromI, fromR, roleInitiator)
	go forward(fromR, fromI, roleResponder)
	t.Cleanup(func() {
		for _, c := range []net.Conn{i, fromI, r, fromR} {
			c.Close()
		}
		wg.Wait()
	})
	return i, r
}

// newSessionPair runs a handshake from alice to bob and returns both
// sessions. modify may change either configuration first.
func newSessionPair(t testing.TB, modify func(i, r *HandshakeConfig)) (*Session, *Session) {
	t.Helper()
	f := newFixture(t)
	icfg, rcfg := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
	if modify != nil {
		modify(&icfg, &rcfg)
	}
	o := handshakePipe(t, initiator(icfg), responder(rcfg))
	if o.initiatorErr != nil || o.responderErr != nil {
		t.Fatalf("handshake: initiator: %v; responder: %v", o.initiatorErr, o.responderErr)
	}
	return o.initiator, o.responder
}

func TestHandshakeMutualAuthentication(t *testing.T) {
	f := newFixture(t)
	icfg, rcfg := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
	icfg.Local.CRLNumber = 7
	o := handshakePipe(t, initiator(icfg), responder(rcfg))
	if o.initiatorErr != nil {
		t.Fatalf("Initiate: %v", o.initiatorErr)
	}
	if o.responderErr != nil {
		t.Fatalf("Respond: %v", o.responderErr)
	}
	is, rs := o.initiator, o.responder

	if !is.PeerCertificate().Equal(f.bob.creds.Cert) {
		t.Error("initiator: peer certificate is not bob's")
	}
	if !rs.PeerCertificate().Equal(f.alice.creds.Cert) {
		t.Error("responder: peer certificate is not alice's")
	}
	if is.RemotePeer() != f.bob.peer || rs.RemotePeer() != f.alice.peer {
		t.Errorf("remote peers %s, %s; want %s, %s", is.RemotePeer(), rs.RemotePeer(), f.bob.peer, f.alice.peer)
	}
	if got := rs.PeerCRLNumber(); got != 7 {
		t.Errorf("responder: peer CRL number %d, want 7", got)
	}
	if got := is.PeerCRLNumber(); got != 0 {
		t.Errorf("initiator: peer CRL number %d, want 0", got)
	}
	if is.ID() != rs.ID() {
		t.Errorf("session IDs differ: %x, %x", is.ID(), rs.ID())
	}
	if is.Fingerprint() != rs.Fingerprint() {
		t.Errorf("fingerprints differ: %s, %s", is.Fingerprint(), rs.Fingerprint())
	}
	if len(is.Fingerprint()) != 16 {
		t.Errorf("fingerprint %q, want 16 hex digits", is.Fingerprint())
	}
	if is.send.key != rs.recv.key || is.recv.key != rs.send.key {
		t.Error("the two sides derived different keys")
	}
	if is.send.key == is.recv.key {
		t.Error("both directions use the same key")
	}
}

func TestHandshakeForwardSecrecy(t *testing.T) {
	f := newFixture(t)
	icfg, rcfg := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
	first := handshakePipe(t, initiator(icfg), responder(rcfg))
	second := handshakePipe(t, initiator(icfg), responder(rcfg))
	for _, o := range []outcome{first, second} {
		if o.initiatorErr != nil || o.responderErr != nil {
			t.Fatalf("handshake: initiator: %v; responder: %v", o.initiatorErr, o.responderErr)
		}
	}
	if bytes.Equal(first.responder.peerStatic, second.responder.peerStatic) {
		t.Error("the initiator reused its Noise static key")
	}
	if bytes.Equal(first.initiator.peerStatic, second.initiator.peerStatic) {
		t.Error("the responder reused its Noise static key")
	}
	if first.initiator.ID() == second.initiator.ID() {
		t.Error("two handshakes produced the same session ID")
	}
	if first.initiator.send.key == second.initiator.send.key || first.initiator.recv.key == second.initiator.recv.key {
		t.Error("two handshakes produced the same session keys")
	}
}

func TestHandshakeConfigChecks(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		modify func(*HandshakeConfig)
	}{
		{"missing certificate", func(c *HandshakeConfig) { c.Local.Cert = nil }},
		{"missing key", func(c *HandshakeConfig) { c.Local.Key = nil }},
		{"key of another certificate", func(c *HandshakeConfig) { c.Local.Key = f.bob.creds.Key }},
		{"certificate of another peer", func(c *HandshakeConfig) { c.LocalPeer = f.bob.peer }},
		{"missing remote peer", func(c *HandshakeConfig) { c.RemotePeer = "" }},
		{"missing VerifyPeer", func(c *HandshakeConfig) { c.VerifyPeer = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config(f.alice, f.bob)
			tt.modify(&cfg)
			c1, _ := pipe(t)
			if _, err := Initiate(c1, cfg); err == nil || errors.Is(err, ErrHandshake) {
				t.Errorf("Initiate: error %v, want a configuration error", err)
			}
			if _, err := Respond(c1, cfg); err == nil || errors.Is(err, ErrHandshake) {
				t.Errorf("Respond: error %v, want a configuration error", err)
			}
		})
	}
}

func TestHandshakeIdentityBinding(t *testing.T) {
	f := newFixture(t)
	accept := func(*x509.Certificate) error { return nil }
	honestAlice, honestBob := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
	// impostor returns the configuration of a side that claims to be
	// local and presents creds.
	impostor := func(local, remote testNode, creds Credentials) HandshakeConfig {
		return HandshakeConfig{Local: creds, LocalPeer: local.peer, RemotePeer: remote.peer, VerifyPeer: accept}
	}
	bobCertMalloryKey := Credentials{Cert: f.bob.creds.Cert, Key: f.mallory.creds.Key}
	aliceCertMalloryKey := Credentials{Cert: f.alice.creds.Cert, Key: f.mallory.creds.Key}

	tests := []struct {
		name     string
		initiate side
		respond  side
		honest   role // the side whose error is checked
		want     error
	}{
		{
			name:     "responder lacks certificate key",
			initiate: initiator(honestAlice),
			respond:  rogue(impostor(f.bob, f.alice, bobCertMalloryKey), roleResponder),
			honest:   roleInitiator,
			want:     ErrBadSignature,
		},
		{
			name:     "initiator lacks certificate key",
			initiate: rogue(impostor(f.alice, f.bob, aliceCertMalloryKey), roleInitiator),
			respond:  responder(honestBob),
			honest:   roleResponder,
			want:     ErrBadSignature,
		},
		{
			name:     "responder certificate names another peer",
			initiate: initiator(honestAlice),
			respond:  rogue(impostor(f.bob, f.alice, f.mallory.creds), roleResponder),
			honest:   roleInitiator,
			want:     ErrPeerMismatch,
		},
		{
			name:     "initiator certificate names another peer",
			initiate: rogue(impostor(f.alice, f.bob, f.mallory.creds), roleInitiator),
			respond:  responder(honestBob),
			honest:   roleResponder,
			want:     ErrPeerMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := handshakePipe(t, tt.initiate, tt.respond)
			if o.initiatorErr == nil && o.responderErr == nil {
				t.Fatal("handshake succeeded")
			}
			err := o.initiatorErr
			if tt.honest == roleResponder {
				err = o.responderErr
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrHandshake) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestHandshakePrologueBindsPeers checks that sides that disagree on the
// peer IDs fail at message 2, before the initiator sends its
// certificate, and not later at a certificate check.
func TestHandshakePrologueBindsPeers(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name              string
		initiate, respond HandshakeConfig
	}{
		{"responder expects another initiator", f.config(f.alice, f.bob), f.config(f.bob, f.mallory)},
		{"initiator expects another responder", f.config(f.alice, f.mallory), f.config(f.bob, f.alice)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.initiate.StepTimeout, tt.respond.StepTimeout = shortStepTimeout, shortStepTimeout
			var mu sync.Mutex
			sent := 0
			c1, c2 := relay(t, func(from role, _ int, _ []byte) bool {
				if from == roleInitiator {
					mu.Lock()
					sent++
					mu.Unlock()
				}
				return true
			})
			o := handshakeOver(c1, c2, initiator(tt.initiate), responder(tt.respond))
			if !errors.Is(o.initiatorErr, ErrHandshake) || o.responderErr == nil {
				t.Fatalf("initiator: %v; responder: %v; want both to fail", o.initiatorErr, o.responderErr)
			}
			for _, err := range []error{o.initiatorErr, o.responderErr} {
				for _, identity := range []error{ErrPeerMismatch, ErrBadSignature, ErrPeerCertificate} {
					if errors.Is(err, identity) {
						t.Errorf("error %v wraps %v, want a failure before the certificate checks", err, identity)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if sent != 1 {
				t.Errorf("initiator sent %d messages, want only message 1", sent)
			}
		})
	}
}

func TestHandshakeVerifyPeerRejects(t *testing.T) {
	f := newFixture(t)
	errRevoked := errors.New("certificate revoked")
	revoked := func(*x509.Certificate) error { return errRevoked }
	isUnknownAuthority := func(err error) bool {
		var target x509.UnknownAuthorityError
		return errors.As(err, &target)
	}
	isExpired := func(err error) bool {
		var target x509.CertificateInvalidError
		return errors.As(err, &target) && target.Reason == x509.Expired
	}
	isRevoked := func(err error) bool { return errors.Is(err, errRevoked) }
	withVerify := func(cfg HandshakeConfig, verify func(*x509.Certificate) error) HandshakeConfig {
		cfg.VerifyPeer = verify
		return cfg
	}

	tests := []struct {
		name     string
		initiate HandshakeConfig
		respond  HandshakeConfig
		honest   role
		cause    func(error) bool
	}{
		{"initiator from another CA", f.config(f.eve, f.bob), f.config(f.bob, f.eve),
			roleResponder, isUnknownAuthority},
		{"responder from another CA", f.config(f.alice, f.eve), f.config(f.eve, f.alice),
			roleInitiator, isUnknownAuthority},
		{"initiator certificate expired", f.config(f.expiredAlice, f.bob), f.config(f.bob, f.expiredAlice),
			roleResponder, isExpired},
		{"responder certificate expired", f.config(f.alice, f.expiredBob), f.config(f.expiredBob, f.alice),
			roleInitiator, isExpired},
		{"initiator certificate revoked", f.config(f.alice, f.bob), withVerify(f.config(f.bob, f.alice), revoked),
			roleResponder, isRevoked},
		{"responder certificate revoked", withVerify(f.config(f.alice, f.bob), revoked), f.config(f.bob, f.alice),
			roleInitiator, isRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := handshakePipe(t, initiator(tt.initiate), responder(tt.respond))
			if o.initiatorErr == nil {
				t.Error("Initiate succeeded")
			}
			if o.responderErr == nil {
				t.Error("Respond succeeded")
			}
			err := o.initiatorErr
			if tt.honest == roleResponder {
				err = o.responderErr
			}
			if !errors.Is(err, ErrPeerCertificate) || !errors.Is(err, ErrHandshake) {
				t.Fatalf("error %v, want %v", err, ErrPeerCertificate)
			}
			if !tt.cause(err) {
				t.Errorf("error %v does not wrap the VerifyPeer error", err)
			}
		})
	}
}

func TestHandshakeKeyConfirmation(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name              string
		from              role
		n                 int
		initiatorSucceeds bool
		want              error // error of the side that receives the frame
	}{
		{"message 1 altered", roleInitiator, 1, false, ErrHandshake},
		{"message 2 altered", roleResponder, 1, false, ErrHandshake},
		{"message 3 altered", roleInitiator, 2, false, ErrHandshake},
		{"responder confirm altered", roleResponder, 2, false, ErrDecrypt},
		// The initiator returns once it has sent its confirm, so only the
		// responder can notice. It resets the stream, so the initiator's next
		// read fails.
		{"initiator confirm altered", roleInitiator, 3, true, ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			icfg, rcfg := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
			icfg.StepTimeout, rcfg.StepTimeout = shortStepTimeout, shortStepTimeout
			c1, c2 := relay(t, func(from role, n int, frame []byte) bool {
				if from == tt.from && n == tt.n {
					frame[len(frame)-1] ^= 1
				}
				return true
			})
			o := handshakeOver(c1, c2, initiator(icfg), responder(rcfg))
			if o.responderErr == nil {
				t.Error("Respond succeeded")
			}
			if tt.initiatorSucceeds != (o.initiatorErr == nil) {
				t.Errorf("Initiate: error %v, want success %t", o.initiatorErr, tt.initiatorSucceeds)
			}
			err := o.initiatorErr
			if tt.from == roleInitiator {
				err = o.responderErr
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrHandshake) {
				t.Errorf("receiver's error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHandshakeStepTimeout(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name              string
		from              role
		n                 int
		initiatorSucceeds bool
	}{
		{"message 1 lost", roleInitiator, 1, false},
		{"message 2 lost", roleResponder, 1, false},
		{"message 3 lost", roleInitiator, 2, false},
		{"responder confirm lost", roleResponder, 2, false},
		{"initiator confirm lost", roleInitiator, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			icfg, rcfg := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
			icfg.StepTimeout, rcfg.StepTimeout = shortStepTimeout, shortStepTimeout
			c1, c2 := relay(t, func(from role, n int, _ []byte) bool {
				return from != tt.from || n != tt.n
			})
			o := handshakeOver(c1, c2, initiator(icfg), responder(rcfg))
			if !errors.Is(o.responderErr, os.ErrDeadlineExceeded) || !errors.Is(o.responderErr, ErrHandshake) {
				t.Errorf("Respond: error %v, want a timeout", o.responderErr)
			}
			if tt.initiatorSucceeds {
				if o.initiatorErr != nil {
					t.Errorf("Initiate: %v", o.initiatorErr)
				}
				return
			}
			if !errors.Is(o.initiatorErr, os.ErrDeadlineExceeded) || !errors.Is(o.initiatorErr, ErrHandshake) {
				t.Errorf("Initiate: error %v, want a timeout", o.initiatorErr)
			}
		})
	}
}

// frame returns p with its 4-byte length prefix.
func frame(p []byte) []byte {
	var b bytes.Buffer
	if err := WriteFrame(&b, p); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandshakeRejectsGarbage(t *testing.T) {
	f := newFixture(t)
	oversized := []byte{0, 0, 0xff, 0xff}
	tests := []struct {
		name string
		// script plays the peer: it writes and reads raw bytes on c.
		script func(c net.Conn)
		side   role // the honest side under test
		want   error
	}{
		{"initiator closes at once", func(c net.Conn) { c.Close() }, roleResponder, ErrHandshake},
		{"short message 1", func(c net.Conn) { c.Write(frame(randomBytes(t, 31))) }, roleResponder, ErrHandshake},
		{"message 1 with payload", func(c net.Conn) { c.Write(frame(randomBytes(t, 40))) }, roleResponder, ErrHandshake},
		{"oversized message 1", func(c net.Conn) { c.Write(oversized) }, roleResponder, ErrFrameTooLarge},
		{"random message 3", func(c net.Conn) {
			c.Write(frame(randomBytes(t, 32)))
			ReadFrame(c, maxHandshakeMessage)
			c.Write(frame(randomBytes(t, 200)))
		}, roleResponder, ErrHandshake},
		{"oversized message 3", func(c net.Conn) {
			c.Write(frame(randomBytes(t, 32)))
			ReadFrame(c, maxHandshakeMessage)
			c.Write(oversized)
		}, roleResponder, ErrFrameTooLarge},
		{"random message 2", func(c net.Conn) {
			ReadFrame(c, maxHandshakeMessage)
			c.Write(frame(randomBytes(t, 500)))
		}, roleInitiator, ErrHandshake},
		{"oversized message 2", func(c net.Conn) {
			ReadFrame(c, maxHandshakeMessage)
			c.Write(oversized)
		}, roleInitiator, ErrFrameTooLarge},
		{"text instead of frames", func(c net.Conn) {
			ReadFrame(c, maxHandshakeMessage)
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		}, roleInitiator, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			honest, peer := pipe(t)
			go tt.script(peer)
			var err error
			if tt.side == roleResponder {
				_, err = Respond(honest, f.config(f.bob, f.alice))
			} else {
				_, err = Initiate(honest, f.config(f.alice, f.bob))
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrHandshake) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignedMessageSeparatesFields(t *testing.T) {
	static := bytes.Repeat([]byte{7}, 32)
	initiatorMsg := signedMessage(roleInitiator, static)
	if bytes.Equal(initiatorMsg, signedMessage(roleResponder, static)) {
		t.Error("the signed message does not depend on the role")
	}
	if bytes.Equal(initiatorMsg, signedMessage(roleInitiator, static[:31])) {
		t.Error("the signed message does not depend on the static key")
	}
	if !bytes.HasPrefix(initiatorMsg, []byte("\x00\x00\x00\x10skm handshake v1\x00\x00\x00\x01\x01\x00\x00\x00\x20")) {
		t.Errorf("signed message %q does not start with the length-prefixed label and role", initiatorMsg)
	}
	a, b := newTestPeerID(t), newTestPeerID(t)
	if bytes.Equal(prologue(a, b), prologue(b, a)) {
		t.Error("the prologue does not depend on which peer initiates")
	}
}

func BenchmarkHandshake(b *testing.B) {
	f := newFixture(b)
	icfg, rcfg := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
	for b.Loop() {
		c1, c2 := net.Pipe()
		o := handshakeOver(c1, c2, initiator(icfg), responder(rcfg))
		c1.Close()
		c2.Close()
		if o.initiatorErr != nil || o.responderErr != nil {
			b.Fatalf("handshake: initiator: %v; responder: %v", o.initiatorErr, o.responderErr)
		}
	}
}
