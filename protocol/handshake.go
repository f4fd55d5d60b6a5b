package protocol

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/flynn/noise"
	"github.com/libp2p/go-libp2p/core/peer"
)

// SessionID is the protocol ID of a session between two enrolled nodes.
// Each session uses one libp2p stream. The handshake runs first, then
// encrypted frames follow on the same stream. libp2p's multistream-select
// negotiates the version, and the ID is also part of the Noise prologue.
const SessionID = "/skm/session/1.0.0"

// DefaultStepTimeout bounds each read or write of the handshake.
const DefaultStepTimeout = 10 * time.Second

// Sentinel errors of the handshake. Every error of [Initiate] and
// [Respond] that a peer or the network can cause wraps [ErrHandshake].
// When the peer's identity was the reason, it also wraps one of the
// others.
var (
	// ErrHandshake is returned when the handshake fails for any reason:
	// I/O, a timeout, a malformed or unauthenticated message, or one of
	// the reasons below.
	ErrHandshake = errors.New("session handshake failed")
	// ErrPeerCertificate is returned when the peer's certificate is
	// missing, does not parse, does not bind an Ed25519 key to an skm
	// identity, or is rejected by [HandshakeConfig.VerifyPeer].
	ErrPeerCertificate = errors.New("peer certificate rejected")
	// ErrBadSignature is returned when the peer's signature over its
	// Noise static key does not verify with its certificate's key, which
	// means that the peer presented a certificate whose private key it
	// does not hold.
	ErrBadSignature = errors.New("handshake signature does not verify")
	// ErrPeerMismatch is returned when the peer's certificate names
	// another libp2p peer than the one the session is with.
	ErrPeerMismatch = errors.New("peer certificate names another peer")
)

// Credentials are the certificate and key with which a node proves its
// identity.
type Credentials struct {
	// Cert is the node's skm user certificate.
	Cert *x509.Certificate
	// Key is the private key that Cert certifies.
	Key ed25519.PrivateKey
	// CRLNumber is the number of the newest CRL the node holds, sent to
	// the peer so that the two can later exchange revocations. Zero
	// means none.
	CRLNumber uint64
}

// Conn is the stream a handshake and its session run on. A libp2p
// network.Stream satisfies it.
type Conn interface {
	io.Reader
	io.Writer
	SetDeadline(time.Time) error
}

// HandshakeConfig configures one side of a handshake.
type HandshakeConfig struct {
	// Local are the credentials this side presents.
	Local Credentials
	// LocalPeer and RemotePeer are the libp2p peers of this side and of
	// the other, as the libp2p connection authenticated them. Both
	// sides must agree on them, or the handshake fails.
	LocalPeer, RemotePeer peer.ID
	// VerifyPeer checks the peer's certificate: that it chains to the
	// pinned CA, is valid now, is not revoked and names RemotePeer. The
	// handshake calls it after its own checks. It must not be nil.
	VerifyPeer func(cert *x509.Certificate) error
	// StepTimeout is the deadline set on the stream before each read and
	// write of the handshake. Zero means [DefaultStepTimeout].
	StepTimeout time.Duration
	// Now is the clock of the rekey timer. Nil means time.Now. Stream
	// deadlines always use time.Now.
	Now func() time.Time
	// RekeyAfterMessages and RekeyAfterTime are the thresholds after
	// which the session's sending side moves to the next key. Zero means
	// [DefaultRekeyAfterMessages] and [DefaultRekeyAfterTime].
	RekeyAfterMessages uint64
	RekeyAfterTime     time.Duration
}

// Initiate runs the initiator's side of the handshake on conn, a stream
// the local node opened to cfg.RemotePeer, and returns the session. It
// returns after the responder has proved that it derived the same keys.
// On error the caller must reset the stream.
func Initiate(conn Conn, cfg HandshakeConfig) (*Session, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return runHandshake(conn, cfg, roleInitiator)
}

// Respond runs the responder's side of the handshake on conn, a stream
// that cfg.RemotePeer opened, and returns the session. It returns after
// the initiator has proved that it derived the same keys. On error the
// caller must reset the stream.
func Respond(conn Conn, cfg HandshakeConfig) (*Session, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return runHandshake(conn, cfg, roleResponder)
}

// validate checks the local half of cfg, so that a local mistake is
// reported as such and not as a failure of the peer.
func (c *HandshakeConfig) validate() error {
	if c.Local.Cert == nil || len(c.Local.Key) != ed25519.PrivateKeySize {
		return errors.New("handshake config: missing local certificate or Ed25519 key")
	}
	pub, ok := c.Local.Cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(c.Local.Key.Public()) {
		return errors.New("handshake config: the local key does not match the local certificate")
	}
	id, err := CertIdentity(c.Local.Cert)
	if err != nil {
		return fmt.Errorf("handshake config: local certificate: %w", err)
	}
	if id.PeerID != c.LocalPeer {
		return fmt.Errorf("handshake config: the local certificate names peer %s, but the local peer is %s",
			id.PeerID, c.LocalPeer)
	}
	if c.RemotePeer == "" {
		return errors.New("handshake config: missing remote peer")
	}
	if c.VerifyPeer == nil {
		return errors.New("handshake config: missing VerifyPeer")
	}
	return nil
}

func (c *HandshakeConfig) setDefaults() {
	if c.StepTimeout <= 0 {
		c.StepTimeout = DefaultStepTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RekeyAfterMessages == 0 {
		c.RekeyAfterMessages = DefaultRekeyAfterMessages
	}
	if c.RekeyAfterTime <= 0 {
		c.RekeyAfterTime = DefaultRekeyAfterTime
	}
}

// newNoiseSuite returns Noise_XX_25519_AESGCM_SHA256 without its pattern,
// with a DH function of its own for one handshake (see x25519).
func newNoiseSuite() (noise.CipherSuite, *x25519) {
	dh := &x25519{keys: map[[32]byte]*ecdh.PrivateKey{}}
	return noise.NewCipherSuite(dh, noise.CipherAESGCM, noise.HashSHA256), dh
}

// x25519 is Noise's 25519 DH function on crypto/ecdh that keeps the
// parsed private keys it generated. flynn/noise's DH25519 goes through
// x/crypto's curve25519.X25519, which parses the private key for every
// DH and so computes its public key each time: twice the scalar
// multiplications a handshake needs. Each handshake gets its own x25519,
// and wipe drops its keys.
type x25519 struct {
	mu   sync.Mutex
	keys map[[32]byte]*ecdh.PrivateKey
}

func (d *x25519) GenerateKeypair(rng io.Reader) (noise.DHKey, error) {
	priv, err := ecdh.X25519().GenerateKey(rng)
	if err != nil {
		return noise.DHKey{}, err
	}
	var id [32]byte
	copy(id[:], priv.Bytes())
	d.mu.Lock()
	d.keys[id] = priv
	d.mu.Unlock()
	return noise.DHKey{Private: priv.Bytes(), Public: priv.PublicKey().Bytes()}, nil
}

func (d *x25519) DH(privkey, pubkey []byte) ([]byte, error) {
	var id [32]byte
	copy(id[:], privkey)
	d.mu.Lock()
	priv := d.keys[id]
	d.mu.Unlock()
	clear(id[:])
	if priv == nil {
		var err error
		if priv, err = ecdh.X25519().NewPrivateKey(privkey); err != nil {
			return nil, err
		}
	}
	pub, err := ecdh.X25519().NewPublicKey(pubkey)
	if err != nil {
		return nil, err
	}
	return priv.ECDH(pub)
}

func (d *x25519) DHLen() int     { return 32 }
func (d *x25519) DHName() string { return "25519" }

// wipe forgets the keys. crypto/ecdh keeps its own copy of each private
// key, which this package cannot zero; it becomes garbage here.
func (d *x25519) wipe() {
	d.mu.Lock()
	for id := range d.keys {
		delete(d.keys, id)
	}
	d.mu.Unlock()
}

// handshake is the state of one side of a handshake in progress.
type handshake struct {
	conn   Conn
	cfg    HandshakeConfig
	role   role
	static noise.DHKey
	noise  *noise.HandshakeState
	dh     *x25519
}

// runHandshake runs the handshake without checking the local
// configuration, which lets tests play a peer that breaks the rules.
func runHandshake(conn Conn, cfg HandshakeConfig, r role) (*Session, error) {
	cfg.setDefaults()
	h, err := newHandshake(conn, cfg, r)
	if err != nil {
		return nil, handshakeError("start", err)
	}
	defer h.wipe()
	var p *sessionParams
	if r == roleInitiator {
		p, err = h.initiate()
	} else {
		p, err = h.respond()
	}
	if err != nil {
		return nil, err
	}
	s, err := newSession(p)
	if err != nil {
		return nil, handshakeError("derive keys", err)
	}
	if err := h.confirm(s); err != nil {
		s.Close()
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		s.Close()
		return nil, handshakeError("clear deadline", err)
	}
	return s, nil
}

// newHandshake makes a fresh X25519 static key, so that every key the
// handshake uses is ephemeral, and starts the Noise XX state.
func newHandshake(conn Conn, cfg HandshakeConfig, r role) (*handshake, error) {
	suite, dh := newNoiseSuite()
	static, err := suite.GenerateKeypair(rand.Reader)
	if err != nil {
		return nil, err
	}
	initiator, responder := cfg.LocalPeer, cfg.RemotePeer
	if r == roleResponder {
		initiator, responder = responder, initiator
	}
	state, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   suite,
		Random:        rand.Reader,
		Pattern:       noise.HandshakeXX,
		Initiator:     r == roleInitiator,
		Prologue:      prologue(initiator, responder),
		StaticKeypair: static,
	})
	if err != nil {
		clear(static.Private)
		return nil, err
	}
	return &handshake{conn: conn, cfg: cfg, role: r, static: static, noise: state, dh: dh}, nil
}

// wipe zeroes the private keys of the handshake.
//
// NOTE: flynn/noise keeps the chaining key inside its HandshakeState,
// where this package cannot zero it. It becomes garbage when the
// handshake returns.
func (h *handshake) wipe() {
	clear(h.static.Private)
	clear(h.noise.LocalEphemeral().Private)
	h.dh.wipe()
}

// initiate sends message 1 (e), reads message 2 (e, ee, s, es and the
// responder's payload) and sends message 3 (s, se and the initiator's
// payload).
func (h *handshake) initiate() (*sessionParams, error) {
	if _, _, err := h.writeMessage(nil); err != nil {
		return nil, handshakeError("write message 1", err)
	}
	payload, _, _, err := h.readMessage()
	if err != nil {
		return nil, handshakeError("read message 2", err)
	}
	remote, err := h.verifyPayload(payload, roleResponder)
	if err != nil {
		return nil, handshakeError("verify responder", err)
	}
	own, err := h.payload()
	if err != nil {
		return nil, handshakeError("write message 3", err)
	}
	i2r, r2i, err := h.writeMessage(own)
	if err != nil {
		return nil, handshakeError("write message 3", err)
	}
	return h.params(remote, i2r, r2i)
}

// respond reads message 1, sends message 2 and reads message 3.
func (h *handshake) respond() (*sessionParams, error) {
	payload, _, _, err := h.readMessage()
	if err != nil {
		return nil, handshakeError("read message 1", err)
	}
	if len(payload) != 0 {
		return nil, handshakeError("read message 1", fmt.Errorf("unexpected payload of %d bytes", len(payload)))
	}
	own, err := h.payload()
	if err != nil {
		return nil, handshakeError("write message 2", err)
	}
	if _, _, err := h.writeMessage(own); err != nil {
		return nil, handshakeError("write message 2", err)
	}
	payload, i2r, r2i, err := h.readMessage()
	if err != nil {
		return nil, handshakeError("read message 3", err)
	}
	remote, err := h.verifyPayload(payload, roleInitiator)
	if err != nil {
		wipeCipherStates(i2r, r2i)
		return nil, handshakeError("verify initiator", err)
	}
	return h.params(remote, i2r, r2i)
}

// confirm exchanges the Confirm frames. The responder sends first, and
// the initiator opens that frame and then sends its own. Each side
// thereby proves that it derived the same session keys.
func (h *handshake) confirm(s *Session) error {
	if h.role == roleResponder {
		if err := h.writeConfirm(s); err != nil {
			return err
		}
		return h.readConfirm(s)
	}
	if err := h.readConfirm(s); err != nil {
		return err
	}
	return h.writeConfirm(s)
}

func (h *handshake) writeConfirm(s *Session) error {
	if err := h.setDeadline(); err != nil {
		return handshakeError("write confirm", err)
	}
	if err := s.writeFrame(h.conn, FrameConfirm, nil); err != nil {
		return handshakeError("write confirm", err)
	}
	return nil
}

func (h *handshake) readConfirm(s *Session) error {
	if err := h.setDeadline(); err != nil {
		return handshakeError("read confirm", err)
	}
	_, body, err := s.readFrame(h.conn, true)
	if err != nil {
		return handshakeError("read confirm", err)
	}
	if len(body) != 0 {
		return handshakeError("read confirm", fmt.Errorf("%w: confirm body of %d bytes, want 0", ErrMalformedFrame, len(body)))
	}
	return nil
}

// params collects what the session starts from and zeroes the split
// cipher states.
func (h *handshake) params(remote *verifiedPeer, i2r, r2i *noise.CipherState) (*sessionParams, error) {
	if i2r == nil || r2i == nil {
		return nil, handshakeError("split", errors.New("the Noise handshake did not complete"))
	}
	p := &sessionParams{
		initiator:          h.role == roleInitiator,
		hash:               h.noise.ChannelBinding(),
		i2r:                i2r.UnsafeKey(),
		r2i:                r2i.UnsafeKey(),
		remotePeer:         h.cfg.RemotePeer,
		peerCert:           remote.cert,
		peerCRL:            remote.crlNumber,
		peerStatic:         remote.static,
		now:                h.cfg.Now,
		rekeyAfterMessages: h.cfg.RekeyAfterMessages,
		rekeyAfterTime:     h.cfg.RekeyAfterTime,
	}
	wipeCipherStates(i2r, r2i)
	return p, nil
}

// writeMessage writes the next Noise message, carrying payload, as one
// frame. It returns the split cipher states after the last message.
func (h *handshake) writeMessage(payload []byte) (*noise.CipherState, *noise.CipherState, error) {
	msg, i2r, r2i, err := h.noise.WriteMessage(nil, payload)
	if err != nil {
		return nil, nil, err
	}
	if err := h.setDeadline(); err != nil {
		wipeCipherStates(i2r, r2i)
		return nil, nil, err
	}
	if err := WriteFrame(h.conn, msg); err != nil {
		wipeCipherStates(i2r, r2i)
		return nil, nil, err
	}
	return i2r, r2i, nil
}

// readMessage reads the next Noise message, of at most
// maxHandshakeMessage bytes, and returns its payload. It returns the
// split cipher states after the last message.
func (h *handshake) readMessage() ([]byte, *noise.CipherState, *noise.CipherState, error) {
	if err := h.setDeadline(); err != nil {
		return nil, nil, nil, err
	}
	msg, err := ReadFrame(h.conn, maxHandshakeMessage)
	if err != nil {
		return nil, nil, nil, err
	}
	payload, i2r, r2i, err := h.noise.ReadMessage(nil, msg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("invalid Noise message (altered in transit, or the sides disagree on their peer IDs): %w", err)
	}
	return payload, i2r, r2i, nil
}

func (h *handshake) setDeadline() error {
	return h.conn.SetDeadline(time.Now().Add(h.cfg.StepTimeout))
}

func handshakeError(step string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrHandshake, step, err)
}

// wipeCipherStates zeroes the keys of Noise cipher states.
func wipeCipherStates(states ...*noise.CipherState) {
	for _, cs := range states {
		if cs != nil {
			*cs = noise.CipherState{}
		}
	}
}
