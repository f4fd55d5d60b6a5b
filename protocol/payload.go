package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Handshake message limits. A payload holds one certificate, under 1 KiB
// as DER, a signature and a number.
const (
	// MaxHandshakePayload bounds the JSON payload of handshake messages 2
	// and 3.
	MaxHandshakePayload = 8 << 10
	// maxHandshakeMessage bounds a handshake frame: an ephemeral key (32
	// bytes), an encrypted static key with its tag (48) and the
	// encrypted payload with its tag.
	maxHandshakeMessage = 32 + 48 + MaxHandshakePayload + 16
)

// handshakeLabel separates the prologue and the payload signatures of
// this protocol from any other use of the same bytes or keys.
const handshakeLabel = "skm handshake v1"

// role is a side of the handshake. The payload signature covers it, so a
// signature made as one side is not valid for the other.
type role byte

const (
	roleInitiator role = 1
	roleResponder role = 2
)

// handshakePayload is the JSON object that each side sends inside the
// encrypted part of its Noise message: the responder in message 2, the
// initiator in message 3.
type handshakePayload struct {
	// Certificate is the sender's skm user certificate, DER.
	Certificate []byte `json:"certificate"`
	// Signature is the Ed25519 signature by the certified key over
	// [signedMessage] of the sender's role and Noise static key.
	Signature []byte `json:"signature"`
	// CRLNumber is the number of the newest CRL the sender holds.
	CRLNumber uint64 `json:"crl_number,omitempty"`
}

// verifiedPeer is the peer's certificate, CRL number and Noise static key,
// as the handshake verified them.
type verifiedPeer struct {
	cert      *x509.Certificate
	crlNumber uint64
	static    []byte
}

// decodeHandshakePayload parses a payload and checks the shape of its
// fields. The certificate is parsed by the caller.
func decodeHandshakePayload(p []byte) (*handshakePayload, error) {
	if len(p) > MaxHandshakePayload {
		return nil, fmt.Errorf("handshake payload of %d bytes, maximum %d: %w",
			len(p), MaxHandshakePayload, ErrFrameTooLarge)
	}
	var v handshakePayload
	if err := DecodeJSON(p, &v); err != nil {
		return nil, fmt.Errorf("handshake payload: %w", err)
	}
	if len(v.Certificate) == 0 {
		return nil, fmt.Errorf("%w: missing from the handshake payload", ErrPeerCertificate)
	}
	if len(v.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature of %d bytes, want %d",
			ErrBadSignature, len(v.Signature), ed25519.SignatureSize)
	}
	return &v, nil
}

// payload returns this side's handshake payload, which signs its Noise
// static key with the certified key.
func (h *handshake) payload() ([]byte, error) {
	sig := ed25519.Sign(h.cfg.Local.Key, signedMessage(h.role, h.static.Public))
	p, err := json.Marshal(handshakePayload{
		Certificate: h.cfg.Local.Cert.Raw,
		Signature:   sig,
		CRLNumber:   h.cfg.Local.CRLNumber,
	})
	if err != nil {
		return nil, err
	}
	if len(p) > MaxHandshakePayload {
		return nil, fmt.Errorf("local handshake payload of %d bytes, maximum %d: %w",
			len(p), MaxHandshakePayload, ErrFrameTooLarge)
	}
	return p, nil
}

// verifyPayload checks the payload that the peer sent in role from. The
// certificate must parse and bind an Ed25519 key to an skm identity, and
// that key must have signed the peer's Noise static key. The certificate
// must name the remote peer, and VerifyPeer must accept it.
func (h *handshake) verifyPayload(p []byte, from role) (*verifiedPeer, error) {
	payload, err := decodeHandshakePayload(p)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(payload.Certificate)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeerCertificate, err)
	}
	id, err := CertIdentity(cert)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPeerCertificate, err)
	}
	static := h.noise.PeerStatic()
	key := cert.PublicKey.(ed25519.PublicKey)
	if !ed25519.Verify(key, signedMessage(from, static), payload.Signature) {
		return nil, fmt.Errorf("%w: the key of user %q's certificate did not sign the Noise static key",
			ErrBadSignature, id.User)
	}
	if id.PeerID != h.cfg.RemotePeer {
		return nil, fmt.Errorf("%w: the certificate of user %q names peer %s, but the session is with %s",
			ErrPeerMismatch, id.User, id.PeerID, h.cfg.RemotePeer)
	}
	if err := h.cfg.VerifyPeer(cert); err != nil {
		return nil, fmt.Errorf("%w: user %q: %w", ErrPeerCertificate, id.User, err)
	}
	return &verifiedPeer{cert: cert, crlNumber: payload.CRLNumber, static: bytes.Clone(static)}, nil
}

// signedMessage returns the bytes a side signs in its payload:
// handshakeLabel, the role byte and the Noise static public key, each
// preceded by its length.
func signedMessage(r role, static []byte) []byte {
	var b []byte
	b = appendField(b, []byte(handshakeLabel))
	b = appendField(b, []byte{byte(r)})
	return appendField(b, static)
}

// prologue returns the Noise prologue: handshakeLabel, [SessionID] and
// the peer IDs of the initiator and the responder, each preceded by its
// length. Noise hashes it into every key, so the handshake fails unless
// both sides agree on who is talking to whom.
func prologue(initiator, responder peer.ID) []byte {
	var b []byte
	b = appendField(b, []byte(handshakeLabel))
	b = appendField(b, []byte(SessionID))
	b = appendField(b, []byte(initiator))
	return appendField(b, []byte(responder))
}

// appendField appends field to b, preceded by its length as a 4-byte
// big-endian integer.
func appendField(b, field []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(field)))
	return append(b, field...)
}
