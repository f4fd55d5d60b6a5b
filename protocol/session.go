package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// FrameType is the kind of an encrypted session frame. The bodies of
// Data, Ack and Close frames are opaque to this package.
type FrameType uint8

// Frame types. A Confirm frame is sent only by the handshake.
const (
	FrameConfirm FrameType = 1
	FrameData    FrameType = 2
	FrameAck     FrameType = 3
	FrameClose   FrameType = 4
)

// String returns the name of t as error messages show it.
func (t FrameType) String() string {
	switch t {
	case FrameConfirm:
		return "confirm"
	case FrameData:
		return "data"
	case FrameAck:
		return "ack"
	case FrameClose:
		return "close"
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

// Session frame layout. A frame is a 4-byte big-endian length, then
// sessionHeaderSize bytes of header, then the AES-256-GCM ciphertext of
// the body with its tag.
const (
	// MaxPlaintext is the largest body a session frame carries.
	MaxPlaintext = 64 << 10

	sessionHeaderSize = 16
	sessionTagSize    = 16
	sessionVersion    = 1
	// maxSessionFrame bounds the length that precedes a frame.
	maxSessionFrame = sessionHeaderSize + MaxPlaintext + sessionTagSize
)

// Default rekey thresholds of the sending side, used when
// [HandshakeConfig.RekeyAfterMessages] and [HandshakeConfig.RekeyAfterTime]
// are zero.
const (
	DefaultRekeyAfterMessages = 1 << 20
	DefaultRekeyAfterTime     = 10 * time.Minute
)

// HKDF info strings of the session keys.
const (
	infoInitiatorToResponder = "skm v1 i2r"
	infoResponderToInitiator = "skm v1 r2i"
	infoRekey                = "skm v1 rekey"
	fingerprintLabel         = "skm session fingerprint v1"
)

// Errors of sealing and opening session frames. A frame that is rejected
// with one of them was read in full, so the caller may read the next one,
// but a peer that sends such frames is broken or under attack.
var (
	// ErrDecrypt is returned for a frame that fails authentication,
	// because its ciphertext, header or session ID was altered or because
	// it was sealed with another key.
	ErrDecrypt = errors.New("frame authentication failed")
	// ErrMalformedFrame is returned for a frame whose header is invalid
	// or that is too short to hold a header and a tag.
	ErrMalformedFrame = errors.New("malformed session frame")
	// ErrKeyEpoch is returned for a frame whose key epoch is neither the
	// current epoch of its direction nor the next one.
	ErrKeyEpoch = errors.New("frame key epoch is neither the current nor the next")
	// ErrSessionClosed is returned after [Session.Close].
	ErrSessionClosed = errors.New("session closed")
)

// Session is an authenticated, encrypted channel to one peer, the result
// of [Initiate] or [Respond]. One goroutine may write while another reads.
// Concurrent writers are serialized, and so are concurrent readers.
type Session struct {
	id         [32]byte
	remotePeer peer.ID
	peerCert   *x509.Certificate
	peerCRL    uint64
	// peerStatic is the peer's Noise static public key, fresh for each
	// handshake.
	peerStatic []byte

	send sender
	recv receiver
}

// ID returns the Noise handshake hash, which is unique to the session
// and the same on both sides. It is not secret. It salts the key
// derivation and is part of every frame's associated data.
func (s *Session) ID() [32]byte { return s.id }

// Fingerprint returns a short printable value that both sides of the
// session compute alike, for logs and for comparison by people. It is
// derived from [Session.ID] and reveals nothing about the keys.
func (s *Session) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(fingerprintLabel))
	h.Write(s.id[:])
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// PeerCertificate returns the certificate that the peer presented and the
// handshake verified.
func (s *Session) PeerCertificate() *x509.Certificate { return s.peerCert }

// PeerCRLNumber returns the CRL number that the peer sent in its
// handshake payload, zero if it sent none.
func (s *Session) PeerCRLNumber() uint64 { return s.peerCRL }

// RemotePeer returns the libp2p peer the session is with.
func (s *Session) RemotePeer() peer.ID { return s.remotePeer }

// WriteFrame seals body as one frame of type typ with the next sequence
// number and writes it to w in a single Write. It rekeys the sending
// direction first when a threshold is reached. A body larger than
// [MaxPlaintext] is rejected with [ErrFrameTooLarge]. After a failed Write
// the stream is out of step with the peer, so every later WriteFrame
// returns that error again.
func (s *Session) WriteFrame(w io.Writer, typ FrameType, body []byte) error {
	if typ != FrameData && typ != FrameAck && typ != FrameClose {
		return fmt.Errorf("write session frame: cannot send a frame of type %v", typ)
	}
	return s.writeFrame(w, typ, body)
}

func (s *Session) writeFrame(w io.Writer, typ FrameType, body []byte) error {
	if len(body) > MaxPlaintext {
		return fmt.Errorf("write session frame: body of %d bytes, maximum %d: %w",
			len(body), MaxPlaintext, ErrFrameTooLarge)
	}
	s.send.mu.Lock()
	defer s.send.mu.Unlock()
	if s.send.err != nil {
		return s.send.err
	}
	frame, err := s.send.seal(&s.id, typ, body)
	if err != nil {
		return err
	}
	if _, err := w.Write(frame); err != nil {
		s.send.err = fmt.Errorf("write session frame: %w", err)
		return s.send.err
	}
	return nil
}

// ReadFrame reads and opens the next frame from r. It rejects frames that
// fail authentication ([ErrDecrypt]), replays ([ErrReplay]), sequence
// numbers outside the replay window ([ErrOutOfWindow]), unexpected key
// epochs ([ErrKeyEpoch]), bad headers and Confirm frames
// ([ErrMalformedFrame]), and lengths above the maximum
// ([ErrFrameTooLarge], checked before allocating). An I/O error before
// the first byte of a frame, such as a read deadline on an idle stream,
// leaves the session usable. After an I/O error within a frame, or after
// [ErrFrameTooLarge], the position in the stream is lost, so every later
// ReadFrame returns that error again.
func (s *Session) ReadFrame(r io.Reader) (FrameType, []byte, error) {
	return s.readFrame(r, false)
}

func (s *Session) readFrame(r io.Reader, confirm bool) (FrameType, []byte, error) {
	s.recv.mu.Lock()
	defer s.recv.mu.Unlock()
	if s.recv.err != nil {
		return 0, nil, s.recv.err
	}
	counter := &countingReader{r: r}
	frame, err := ReadFrame(counter, maxSessionFrame)
	if err != nil {
		err = fmt.Errorf("read session frame: %w", err)
		if counter.n > 0 {
			s.recv.err = err
		}
		return 0, nil, err
	}
	return s.recv.open(&s.id, frame, confirm)
}

// countingReader counts the bytes read through it. A failed read that
// consumed no bytes left the stream at a frame boundary.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Close zeroes the keys of both directions. Later reads and writes return
// [ErrSessionClosed]. Close neither writes a Close frame nor closes the
// stream, which are left to the caller.
func (s *Session) Close() {
	s.send.mu.Lock()
	s.send.wipe()
	s.send.err = ErrSessionClosed
	s.send.mu.Unlock()

	s.recv.mu.Lock()
	s.recv.wipe()
	s.recv.err = ErrSessionClosed
	s.recv.mu.Unlock()
}

// sessionParams are the handshake results that a [Session] starts from.
type sessionParams struct {
	initiator  bool
	hash       []byte // the Noise handshake hash
	i2r, r2i   [32]byte
	remotePeer peer.ID
	peerCert   *x509.Certificate
	peerCRL    uint64
	peerStatic []byte

	now                func() time.Time
	rekeyAfterMessages uint64
	rekeyAfterTime     time.Duration
}

// newSession derives the key of each direction from the Noise split keys
// with HKDF-SHA256, salted with the handshake hash, and zeroes the split
// keys in p.
func newSession(p *sessionParams) (*Session, error) {
	defer clear(p.i2r[:])
	defer clear(p.r2i[:])
	if len(p.hash) != 32 {
		return nil, fmt.Errorf("handshake hash of %d bytes, want 32", len(p.hash))
	}
	s := &Session{
		remotePeer: p.remotePeer,
		peerCert:   p.peerCert,
		peerCRL:    p.peerCRL,
		peerStatic: p.peerStatic,
	}
	copy(s.id[:], p.hash)

	sendSplit, recvSplit := &p.i2r, &p.r2i
	sendInfo, recvInfo := infoInitiatorToResponder, infoResponderToInitiator
	if !p.initiator {
		sendSplit, recvSplit = recvSplit, sendSplit
		sendInfo, recvInfo = recvInfo, sendInfo
	}

	var err error
	if s.send.key, s.send.aead, err = directionKey(sendSplit, s.id[:], sendInfo); err != nil {
		return nil, err
	}
	if s.recv.key, s.recv.aead, err = directionKey(recvSplit, s.id[:], recvInfo); err != nil {
		s.send.wipe()
		return nil, err
	}

	s.send.now = p.now
	s.send.epochStart = p.now()
	s.send.rekeyAfterMessages = p.rekeyAfterMessages
	s.send.rekeyAfterTime = p.rekeyAfterTime
	return s, nil
}

// directionKey derives the AES-256-GCM key of one direction:
// HKDF-SHA256 with the split key as input key material, the handshake
// hash as salt and info naming the direction.
func directionKey(split *[32]byte, hash []byte, info string) ([32]byte, cipher.AEAD, error) {
	var key [32]byte
	out, err := hkdf.Key(sha256.New, split[:], hash, info, len(key))
	if err != nil {
		return key, nil, fmt.Errorf("derive session key: %w", err)
	}
	copy(key[:], out)
	clear(out)
	aead, err := newAEAD(&key)
	if err != nil {
		clear(key[:])
		return key, nil, err
	}
	return key, aead, nil
}

// newAEAD returns AES-256-GCM keyed with key.
func newAEAD(key *[32]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ratchet derives the key of the next epoch from key:
// HKDF-Expand(key, "skm v1 rekey", 32). The caller zeroes key.
func ratchet(key *[32]byte) ([32]byte, cipher.AEAD, error) {
	var next [32]byte
	out, err := hkdf.Expand(sha256.New, key[:], infoRekey, len(next))
	if err != nil {
		return next, nil, fmt.Errorf("derive next session key: %w", err)
	}
	copy(next[:], out)
	clear(out)
	aead, err := newAEAD(&next)
	if err != nil {
		clear(next[:])
		return next, nil, err
	}
	return next, aead, nil
}
