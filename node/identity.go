package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Record keys of a node's store.
const (
	keyPeer        = "peer"        // store.Keys: libp2p identity key
	metaUser       = "user"        // store.Meta: user name
	metaKeyVersion = "key-version" // store.Meta: current key version
	metaCAAddr     = "ca-addr"     // store.Meta: CA multiaddr used to enroll
	certCA         = "ca"          // store.Certs: trusted CA certificate, DER
)

func signingKeyName(version int) string { return "signing/" + strconv.Itoa(version) }
func leafCertName(version int) string   { return "leaf/" + strconv.Itoa(version) }

// ErrNotInitialized is returned for a store that has no node identity.
var ErrNotInitialized = errors.New("no node identity in this home: run skm init")

// ErrNotEnrolled is returned where a certificate is needed but the node
// has not enrolled with a CA.
var ErrNotEnrolled = errors.New("node is not enrolled: run skm enroll --ca MULTIADDR")

// Identity is a node's keys and certificates for its current key version.
type Identity struct {
	User       string
	KeyVersion int
	PeerKey    crypto.PrivKey
	PeerID     peer.ID
	SigningKey ed25519.PrivateKey
	// Cert and CACert are nil until the node enrolls.
	Cert   *x509.Certificate
	CACert *x509.Certificate
}

// Protocol returns the identity that the node's certificate must bind.
func (id *Identity) Protocol() protocol.Identity {
	return protocol.Identity{User: id.User, KeyVersion: id.KeyVersion, PeerID: id.PeerID}
}

// Init generates a node identity for user in st: a libp2p Ed25519 key and
// signing key version 1. It fails if st already has an identity.
func Init(st *store.Store, user string) (*Identity, error) {
	if err := protocol.ValidateUserName(user); err != nil {
		return nil, err
	}
	peerKey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	peerKeyBytes, err := crypto.MarshalPrivateKey(peerKey)
	if err != nil {
		return nil, err
	}
	defer clear(peerKeyBytes)
	_, signing, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	err = st.Update(func(tx *store.Tx) error {
		if err := tx.Insert(store.Meta, metaUser, []byte(user)); err != nil {
			return err
		}
		if err := tx.Put(store.Meta, metaKeyVersion, []byte("1")); err != nil {
			return err
		}
		if err := tx.Put(store.Keys, keyPeer, peerKeyBytes); err != nil {
			return err
		}
		return tx.Put(store.Keys, signingKeyName(1), signing.Seed())
	})
	if errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("%s already has a node identity", st.Dir())
	}
	if err != nil {
		return nil, err
	}
	return LoadIdentity(st)
}

// LoadIdentity reads the node's identity and, if enrolled, its
// certificates from st.
func LoadIdentity(st *store.Store) (*Identity, error) {
	id := &Identity{}
	err := st.View(func(tx *store.Tx) error {
		user, err := tx.Get(store.Meta, metaUser)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotInitialized
		}
		if err != nil {
			return err
		}
		id.User = string(user)
		if id.KeyVersion, err = readVersion(tx); err != nil {
			return err
		}
		if err := loadKeys(tx, id); err != nil {
			return err
		}
		return loadCerts(tx, id)
	})
	if err != nil {
		return nil, err
	}
	return id, nil
}

func readVersion(tx *store.Tx) (int, error) {
	raw, err := tx.Get(store.Meta, metaKeyVersion)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("stored key version %q is invalid", raw)
	}
	return v, nil
}

func loadKeys(tx *store.Tx, id *Identity) error {
	peerKeyBytes, err := tx.Get(store.Keys, keyPeer)
	if err != nil {
		return err
	}
	defer clear(peerKeyBytes)
	if id.PeerKey, err = crypto.UnmarshalPrivateKey(peerKeyBytes); err != nil {
		return fmt.Errorf("parse libp2p key: %w", err)
	}
	if id.PeerID, err = peer.IDFromPrivateKey(id.PeerKey); err != nil {
		return err
	}
	seed, err := tx.Get(store.Keys, signingKeyName(id.KeyVersion))
	if err != nil {
		return err
	}
	defer clear(seed)
	if len(seed) != ed25519.SeedSize {
		return fmt.Errorf("signing key version %d has %d bytes, want %d", id.KeyVersion, len(seed), ed25519.SeedSize)
	}
	id.SigningKey = ed25519.NewKeyFromSeed(seed)
	return nil
}

func loadCerts(tx *store.Tx, id *Identity) error {
	caDER, err := tx.Get(store.Certs, certCA)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if id.CACert, err = x509.ParseCertificate(caDER); err != nil {
		return fmt.Errorf("parse CA certificate: %w", err)
	}
	leafDER, err := tx.Get(store.Certs, leafCertName(id.KeyVersion))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if id.Cert, err = x509.ParseCertificate(leafDER); err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	return nil
}
