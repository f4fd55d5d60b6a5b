package bench

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/flynn/noise"

	"github.com/skm-p2p/skm/node"
)

// BenchmarkPrimitive measures each operation that CryptoLimit adds up,
// and flynn/noise's own DH25519 for comparison, so that a change can be
// traced to one operation.
func BenchmarkPrimitive(b *testing.B) {
	ca, err := newMemoryCA()
	if err != nil {
		b.Fatal(err)
	}
	id, err := ca.issue("alice")
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, signedSize)
	sig := ed25519.Sign(id.creds.Key, msg)
	pub := id.creds.Key.Public().(ed25519.PublicKey)
	ecdhKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	ecdhPeer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	noiseKey, _ := noise.DH25519.GenerateKeypair(rand.Reader)
	noisePeer, _ := noise.DH25519.GenerateKeypair(rand.Reader)

	benchmarks := []struct {
		name string
		op   func() error
	}{
		{"x25519-keygen-ecdh", func() error {
			_, err := ecdh.X25519().GenerateKey(rand.Reader)
			return err
		}},
		{"x25519-dh-ecdh", func() error {
			_, err := ecdhKey.ECDH(ecdhPeer.PublicKey())
			return err
		}},
		{"x25519-keygen-noise", func() error {
			_, err := noise.DH25519.GenerateKeypair(rand.Reader)
			return err
		}},
		{"x25519-dh-noise", func() error {
			_, err := noise.DH25519.DH(noiseKey.Private, noisePeer.Public)
			return err
		}},
		{"ed25519-sign", func() error {
			ed25519.Sign(id.creds.Key, msg)
			return nil
		}},
		{"ed25519-verify", func() error {
			ed25519.Verify(pub, msg, sig)
			return nil
		}},
		{"verify-chain", func() error {
			return node.VerifyChain(id.creds.Cert, ca.cert, time.Now())
		}},
		{"parse-certificate", func() error {
			_, err := x509.ParseCertificate(id.creds.Cert.Raw)
			return err
		}},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				if err := bm.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
