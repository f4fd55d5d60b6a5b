package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
)

// fixedSessions returns the two sides of a session built from fixed keys
// without a handshake, as if the confirm frames had been exchanged. The
// sender rekeys after every two frames.
func fixedSessions(t testing.TB) (sender, receiver *Session) {
	t.Helper()
	params := func(initiator bool) *sessionParams {
		return &sessionParams{
			initiator:          initiator,
			hash:               bytes.Repeat([]byte{0x5e}, 32),
			i2r:                [32]byte{0x12},
			r2i:                [32]byte{0x21},
			now:                time.Now,
			rekeyAfterMessages: 2,
			rekeyAfterTime:     time.Hour,
		}
	}
	sender, err := newSession(params(true))
	if err != nil {
		t.Fatal(err)
	}
	receiver, err = newSession(params(false))
	if err != nil {
		t.Fatal(err)
	}
	sender.send.seq = 1
	return sender, receiver
}

// FuzzOpenFrame feeds arbitrary bytes to ReadFrame of an established
// session, frame after frame, until the session stops reading.
func FuzzOpenFrame(f *testing.F) {
	sender, _ := fixedSessions(f)
	var stream []byte
	for _, body := range []string{"first", "", "third, in epoch 1"} {
		wire := seal(f, sender, FrameData, []byte(body))
		f.Add(wire)
		stream = append(stream, wire...)
	}
	f.Add(stream)
	f.Add(append(bytes.Clone(stream[:30]), stream...))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Add(binary.BigEndian.AppendUint32(nil, maxSessionFrame+1))

	f.Fuzz(func(t *testing.T, wire []byte) {
		_, receiver := fixedSessions(t)
		r := bytes.NewReader(wire)
		for r.Len() > 0 && receiver.recv.err == nil {
			_, body, err := receiver.ReadFrame(r)
			if err == nil && len(body) > MaxPlaintext {
				t.Fatalf("ReadFrame returned a body of %d bytes", len(body))
			}
		}
	})
}

// FuzzHandshakePayload checks that decoding a payload never panics and
// that whatever decodes survives a round trip.
func FuzzHandshakePayload(f *testing.F) {
	fx := newFixture(f)
	valid, err := json.Marshal(handshakePayload{
		Certificate: fx.alice.creds.Cert.Raw,
		Signature:   make([]byte, ed25519.SignatureSize),
		CRLNumber:   3,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"certificate":"AA==","signature":""}`))
	f.Add([]byte(`{"certificate":"AA==","signature":"AA==","extra":1}`))
	f.Add([]byte(`{"certificate":"AA==","signature":"AA==","crl_number":-1}`))
	f.Add(append(bytes.Clone(valid), ` {}`...))

	f.Fuzz(func(t *testing.T, p []byte) {
		v, err := decodeHandshakePayload(p)
		if err != nil {
			return
		}
		if len(v.Certificate) == 0 || len(v.Signature) != ed25519.SignatureSize {
			t.Fatalf("decoded an invalid payload: %+v", v)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		w, err := decodeHandshakePayload(again)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if !bytes.Equal(v.Certificate, w.Certificate) || !bytes.Equal(v.Signature, w.Signature) || v.CRLNumber != w.CRLNumber {
			t.Fatalf("round trip changed the payload: %+v, %+v", v, w)
		}
		if cert, err := x509.ParseCertificate(v.Certificate); err == nil {
			CertIdentity(cert)
		}
	})
}

// scriptedConn plays an initiator that sends a fixed byte stream and
// ignores what it receives.
type scriptedConn struct {
	r *bytes.Reader
}

func (c *scriptedConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scriptedConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *scriptedConn) SetDeadline(time.Time) error { return nil }

// FuzzResponderHandshake feeds arbitrary bytes to a responder as the
// initiator's side of the stream. A real initiator's recording is a seed,
// but it cannot succeed, because the responder's ephemeral key is fresh.
func FuzzResponderHandshake(f *testing.F) {
	fx := newFixture(f)
	cfg := fx.config(fx.bob, fx.alice)
	recorded := recordInitiator(f, fx)
	f.Add(recorded)
	f.Add(recorded[:4+32])
	f.Add(frame(make([]byte, 32)))
	f.Add(frame(make([]byte, 40)))
	f.Add(append(frame(make([]byte, 32)), frame(make([]byte, 200))...))
	f.Add([]byte{0, 0, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, stream []byte) {
		s, err := Respond(&scriptedConn{r: bytes.NewReader(stream)}, cfg)
		if err == nil {
			s.Close()
			t.Fatal("handshake with a scripted initiator succeeded")
		}
		if !errors.Is(err, ErrHandshake) {
			t.Fatalf("error %v does not wrap %v", err, ErrHandshake)
		}
	})
}

// recordInitiator returns what alice sends in a complete handshake with
// bob: messages 1 and 3 and her confirm frame.
func recordInitiator(t testing.TB, fx *fixture) []byte {
	t.Helper()
	var mu bytesMutex
	c1, c2 := relay(t, func(from role, _ int, frame []byte) bool {
		if from == roleInitiator {
			mu.append(frame)
		}
		return true
	})
	o := handshakeOver(c1, c2, initiator(fx.config(fx.alice, fx.bob)), responder(fx.config(fx.bob, fx.alice)))
	if o.initiatorErr != nil || o.responderErr != nil {
		t.Fatalf("handshake: initiator: %v; responder: %v", o.initiatorErr, o.responderErr)
	}
	return mu.bytes()
}

// bytesMutex collects frames from the relay's goroutines.
type bytesMutex struct {
	mu  sync.Mutex
	buf []byte
}

func (b *bytesMutex) append(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, frame(p)...)
}

func (b *bytesMutex) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf)
}

// BenchmarkHandshakeCrypto times only the public-key operations and the
// certificate parsing of one handshake, both sides together: the lower
// bound of BenchmarkHandshake.
func BenchmarkHandshakeCrypto(b *testing.B) {
	fx := newFixture(b)
	curve := ecdh.X25519()
	static := make([]byte, 32)
	for b.Loop() {
		// Each side makes an ephemeral and a static X25519 key.
		var keys [4]*ecdh.PrivateKey
		for i := range keys {
			k, err := curve.GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			keys[i] = k
		}
		iE, iS, rE, rS := keys[0], keys[1], keys[2], keys[3]
		// XX computes ee, es and se, each on both sides.
		pairs := [][2]*ecdh.PrivateKey{{iE, rE}, {rE, iE}, {iE, rS}, {rS, iE}, {iS, rE}, {rE, iS}}
		for _, p := range pairs {
			if _, err := p[0].ECDH(p[1].PublicKey()); err != nil {
				b.Fatal(err)
			}
		}
		msgI, msgR := signedMessage(roleInitiator, static), signedMessage(roleResponder, static)
		sigI := ed25519.Sign(fx.alice.creds.Key, msgI)
		sigR := ed25519.Sign(fx.bob.creds.Key, msgR)
		certI, err := x509.ParseCertificate(fx.alice.creds.Cert.Raw)
		if err != nil {
			b.Fatal(err)
		}
		certR, err := x509.ParseCertificate(fx.bob.creds.Cert.Raw)
		if err != nil {
			b.Fatal(err)
		}
		if !ed25519.Verify(certI.PublicKey.(ed25519.PublicKey), msgI, sigI) ||
			!ed25519.Verify(certR.PublicKey.(ed25519.PublicKey), msgR, sigR) {
			b.Fatal("signature does not verify")
		}
	}
}
