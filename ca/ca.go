// Package ca is skm's certificate authority: it keeps the CA key and
// certificate in an encrypted store, issues X.509 certificates to users
// who enroll over libp2p, and records every certificate it issues.
//
// An [Authority] is the CA itself. [Authority.HandleEnroll] serves the
// enrollment protocol on a libp2p host, [NewAPIHandler] serves the local
// control API, and [Client] calls that API from another process.
package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Record keys of the CA's store.
const (
	keyCA     = "ca"   // store.Keys: PKCS #8 Ed25519 CA key
	keyPeer   = "peer" // store.Keys: libp2p identity of the CA's host
	certCA    = "ca"   // store.Certs: self-signed CA certificate, DER
	metaName  = "ca-name"
	caLife    = 10 * 365 * 24 * time.Hour
	clockSkew = time.Minute
)

// DefaultValidity is the lifetime of an issued certificate.
const DefaultValidity = 30 * 24 * time.Hour

// ErrNotCA is returned by [Load] for a store without a CA.
var ErrNotCA = errors.New("store has no CA: run skm ca init first")

// Config holds an Authority's settings. The zero value issues
// [DefaultValidity] certificates, requires tokens and discards logs.
type Config struct {
	// Validity is the lifetime of issued certificates.
	Validity time.Duration
	// Open accepts enrollment without a token, first come first served
	// by user name.
	Open bool
	// CRLValidity is the time from a CRL's thisUpdate to its nextUpdate.
	CRLValidity time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Log receives one line per enrollment, accepted or rejected.
	Log *slog.Logger
	// OnCRL, if set, is called with each CRL the CA signs, after it is
	// stored, so that the caller can publish it.
	OnCRL func(*x509.RevocationList)
}

// Authority is an open CA. Its methods are safe for concurrent use.
type Authority struct {
	st      *store.Store
	key     ed25519.PrivateKey
	peerKey crypto.PrivKey
	cert    *x509.Certificate
	cfg     Config

	// mu serializes issuance and revocation, so the checks on a user
	// name and the record that claims it see the same state.
	mu sync.Mutex
	// hookMu guards cfg.OnCRL.
	hookMu sync.Mutex
}

// Init creates a CA named name in st: an Ed25519 CA key, a libp2p
// identity for the CA's host, and a self-signed certificate valid for ten
// years that names that host's peer ID.
func Init(st *store.Store, name string, cfg Config) (*Authority, error) {
	if err := validateCAName(name); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	peerKey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(peerKey)
	if err != nil {
		return nil, err
	}
	cert, err := selfSign(name, key, id, cfg.Now())
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	peerKeyBytes, err := crypto.MarshalPrivateKey(peerKey)
	if err != nil {
		return nil, err
	}
	err = st.Update(func(tx *store.Tx) error {
		if err := tx.Insert(store.Meta, metaName, []byte(name)); err != nil {
			return err
		}
		if err := tx.Put(store.Keys, keyCA, keyDER); err != nil {
			return err
		}
		if err := tx.Put(store.Keys, keyPeer, peerKeyBytes); err != nil {
			return err
		}
		return tx.Put(store.Certs, certCA, cert.Raw)
	})
	clear(keyDER)
	clear(peerKeyBytes)
	if errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("%s already has a CA", st.Dir())
	}
	if err != nil {
		return nil, err
	}
	return &Authority{st: st, key: key, peerKey: peerKey, cert: cert, cfg: cfg}, nil
}

// Load opens the CA kept in st.
func Load(st *store.Store, cfg Config) (*Authority, error) {
	a := &Authority{st: st, cfg: cfg.withDefaults()}
	err := st.View(func(tx *store.Tx) error {
		if _, err := tx.Get(store.Meta, metaName); errors.Is(err, store.ErrNotFound) {
			return ErrNotCA
		}
		keyDER, err := tx.Get(store.Keys, keyCA)
		if err != nil {
			return err
		}
		defer clear(keyDER)
		parsed, err := x509.ParsePKCS8PrivateKey(keyDER)
		if err != nil {
			return fmt.Errorf("parse CA key: %w", err)
		}
		var ok bool
		if a.key, ok = parsed.(ed25519.PrivateKey); !ok {
			return fmt.Errorf("CA key is %T, want Ed25519", parsed)
		}
		peerKeyBytes, err := tx.Get(store.Keys, keyPeer)
		if err != nil {
			return err
		}
		defer clear(peerKeyBytes)
		if a.peerKey, err = crypto.UnmarshalPrivateKey(peerKeyBytes); err != nil {
			return fmt.Errorf("parse CA host key: %w", err)
		}
		certDER, err := tx.Get(store.Certs, certCA)
		if err != nil {
			return err
		}
		a.cert, err = x509.ParseCertificate(certDER)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (c Config) withDefaults() Config {
	if c.Validity <= 0 {
		c.Validity = DefaultValidity
	}
	if c.CRLValidity <= 0 {
		c.CRLValidity = DefaultCRLValidity
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// ValidateName returns an error unless name is a valid CA name: 1 to 64
// printable characters with no leading or trailing space.
func ValidateName(name string) error { return validateCAName(name) }

func validateCAName(name string) error {
	if name == "" || len(name) > 64 || strings.TrimSpace(name) != name {
		return fmt.Errorf("invalid CA name %q: use 1 to 64 characters with no leading or trailing space", name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("invalid CA name %q: it contains a non-printable character", name)
		}
	}
	return nil
}

func selfSign(name string, key ed25519.PrivateKey, host peer.ID, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"skm"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caLife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{protocol.PeerURI(host)},
	}
	pub := key.Public()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// randomSerial returns a random positive 128-bit serial number, as the
// CA/Browser Forum requires at least 64 bits of randomness.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, err
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialString formats a serial number as openssl does: uppercase hex.
func SerialString(n *big.Int) string {
	return strings.ToUpper(n.Text(16))
}

// SetOnCRL sets the function called with each CRL the CA signs, as
// [Config.OnCRL] does. Call it before the CA serves requests.
func (a *Authority) SetOnCRL(fn func(*x509.RevocationList)) {
	a.hookMu.Lock()
	a.cfg.OnCRL = fn
	a.hookMu.Unlock()
}

// Certificate returns the CA certificate.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// PeerKey returns the private key of the CA's libp2p host.
func (a *Authority) PeerKey() crypto.PrivKey { return a.peerKey }

// Name returns the CA's name.
func (a *Authority) Name() string { return a.cert.Subject.CommonName }
