package bench

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
)

// Handshakes runs n handshakes one after another, each on a new stream
// on the pair's connection, and returns the time they took. A handshake
// counts once both sides have returned from [protocol.Initiate] and
// [protocol.Respond].
func (p *Pair) Handshakes(ctx context.Context, n int) (time.Duration, error) {
	start := time.Now()
	for i := range n {
		if err := p.handshake(ctx); err != nil {
			return 0, fmt.Errorf("handshake %d: %w", i+1, err)
		}
	}
	return time.Since(start), nil
}

func (p *Pair) handshake(ctx context.Context) error {
	s, err := p.clientHost.NewStream(ctx, p.serverHost.ID(), protocol.SessionID)
	if err != nil {
		return err
	}
	secure, err := protocol.Initiate(s, p.config(p.client, p.server))
	if err != nil {
		s.Reset()
		p.wait(ctx)
		return err
	}
	secure.Close()
	s.Close()
	_, err = p.wait(ctx)
	return err
}

// signedSize is the length of the message each side of a handshake
// signs: a 16-byte label, a role byte and a 32-byte X25519 key, each with
// a 4-byte length.
const signedSize = 4 + 16 + 4 + 1 + 4 + 32

// noiseDH lists the Diffie-Hellman operations of Noise XX by the index
// of the private and the public key in the four key pairs of a
// handshake: the client's ephemeral and static key at 0 and 1, the
// server's at 2 and 3. They are ee, es and se as the client computes
// them, then as the server does.
var noiseDH = [6][2]int{{0, 2}, {0, 3}, {1, 2}, {2, 0}, {3, 0}, {2, 1}}

// CryptoLimit runs n times the public-key operations of one handshake,
// both sides together, on the calling goroutine and returns the time
// they took. There are four X25519 key pairs, a static and an ephemeral
// key on each side, because the handshake makes a fresh static key.
// There are six X25519 Diffie-Hellman operations (ee, es and se on each
// side), two Ed25519 signatures, two Ed25519 verifications and two
// certificate chain verifications with [node.VerifyChain]. X25519 runs
// through crypto/ecdh, at the cost of one scalar multiplication per
// operation. A handshake adds message I/O, the stream, JSON, certificate
// parsing, hashing, AES-GCM and any extra work its libraries do.
func (p *Pair) CryptoLimit(n int) (time.Duration, error) {
	return p.timeCrypto(n, ecdhX25519)
}

func (p *Pair) timeCrypto(n int, x25519 func() error) (time.Duration, error) {
	msg := make([]byte, signedSize)
	start := time.Now()
	for i := range n {
		if err := x25519(); err != nil {
			return 0, fmt.Errorf("crypto operations %d: %w", i+1, err)
		}
		if err := p.signatures(msg); err != nil {
			return 0, fmt.Errorf("crypto operations %d: %w", i+1, err)
		}
	}
	return time.Since(start), nil
}

// ecdhX25519 makes the key pairs and computes the Diffie-Hellman
// operations of one handshake with crypto/ecdh.
func ecdhX25519() error {
	var keys [4]*ecdh.PrivateKey
	for i := range keys {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		keys[i] = k
	}
	for _, d := range noiseDH {
		if _, err := keys[d[0]].ECDH(keys[d[1]].PublicKey()); err != nil {
			return err
		}
	}
	return nil
}

// signatures makes and checks the signatures of one handshake: each
// side signs msg, and the other verifies that signature and the
// signer's certificate chain.
func (p *Pair) signatures(msg []byte) error {
	for _, side := range []*identity{p.client, p.server} {
		sig := ed25519.Sign(side.creds.Key, msg)
		pub := side.creds.Key.Public().(ed25519.PublicKey)
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("an Ed25519 signature did not verify")
		}
		if err := node.VerifyChain(side.creds.Cert, p.ca.cert, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// Throughput sends n messages of size bytes from the client to the
// server on one new stream of kind. It returns the time from the first
// write to the server's read of the last message; opening the stream
// and the handshake come before that.
func (p *Pair) Throughput(ctx context.Context, kind Kind, size, n int) (time.Duration, error) {
	s, f, err := p.open(ctx, kind, false)
	if err != nil {
		return 0, err
	}
	defer closeFramer(f)
	body := make([]byte, size)
	start := time.Now()
	for i := range n {
		if err := f.write(s, body); err != nil {
			s.Reset()
			p.wait(ctx)
			return 0, fmt.Errorf("write message %d: %w", i+1, err)
		}
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		p.wait(ctx)
		return 0, fmt.Errorf("close %s stream: %w", kind, err)
	}
	r, err := p.wait(ctx)
	s.Close()
	if err != nil {
		return 0, err
	}
	if r.frames != n {
		return 0, fmt.Errorf("server read %d messages, want %d", r.frames, n)
	}
	return r.last.Sub(start), nil
}

// RoundTrips sends n messages of size bytes from the client to the
// server on one new stream of kind, one at a time, and waits for the
// server to send each back. It returns the time of each round trip.
func (p *Pair) RoundTrips(ctx context.Context, kind Kind, size, n int) ([]time.Duration, error) {
	s, f, err := p.open(ctx, kind, true)
	if err != nil {
		return nil, err
	}
	defer closeFramer(f)
	body := make([]byte, size)
	samples := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		err := f.write(s, body)
		var reply []byte
		if err == nil {
			reply, err = f.read(s)
		}
		if err == nil && len(reply) != size {
			err = fmt.Errorf("reply of %d bytes, want %d", len(reply), size)
		}
		if err != nil {
			s.Reset()
			p.wait(ctx)
			return nil, fmt.Errorf("round trip %d: %w", i+1, err)
		}
		samples = append(samples, time.Since(start))
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		p.wait(ctx)
		return nil, fmt.Errorf("close %s stream: %w", kind, err)
	}
	_, err = p.wait(ctx)
	s.Close()
	return samples, err
}
