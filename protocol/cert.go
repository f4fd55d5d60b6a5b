package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// URI prefixes of the subject alternative names skm issues.
const (
	peerURIPrefix       = "skm:peer:"
	keyVersionURIPrefix = "skm:key-version:"
)

// MaxKeyVersion bounds key versions so they fit every integer type in use,
// int32 and a 32-bit int included.
const MaxKeyVersion = 1<<31 - 1

// userNamePattern is the syntax of user names: lowercase so that "Alice"
// and "alice" cannot be two users, and free of characters that need
// quoting in a URI, a file name or a shell.
var userNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidateUserName returns an error unless name is a valid user name.
func ValidateUserName(name string) error {
	if !userNamePattern.MatchString(name) {
		return fmt.Errorf("invalid user name %q: use 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Identity is what a user certificate binds together.
type Identity struct {
	User       string
	KeyVersion int
	PeerID     peer.ID
}

// URIs returns the subject alternative names that encode id's peer ID and
// key version.
func (id Identity) URIs() []*url.URL {
	return []*url.URL{
		{Scheme: "skm", Opaque: "peer:" + id.PeerID.String()},
		{Scheme: "skm", Opaque: "key-version:" + strconv.Itoa(id.KeyVersion)},
	}
}

// PeerURI returns the subject alternative name that names a libp2p peer.
func PeerURI(p peer.ID) *url.URL {
	return &url.URL{Scheme: "skm", Opaque: "peer:" + p.String()}
}

// ParseIdentity reads the identity from a certificate's or a CSR's subject
// common name and URIs. Exactly one URI of each kind must be present.
func ParseIdentity(commonName string, uris []*url.URL) (Identity, error) {
	id := Identity{User: commonName}
	if err := ValidateUserName(commonName); err != nil {
		return id, err
	}
	var havePeer, haveVersion bool
	for _, u := range uris {
		s := u.String()
		switch {
		case strings.HasPrefix(s, peerURIPrefix):
			if havePeer {
				return id, errors.New("more than one skm:peer URI")
			}
			p, err := peer.Decode(strings.TrimPrefix(s, peerURIPrefix))
			if err != nil {
				return id, fmt.Errorf("invalid peer ID in %q: %w", s, err)
			}
			id.PeerID, havePeer = p, true
		case strings.HasPrefix(s, keyVersionURIPrefix):
			if haveVersion {
				return id, errors.New("more than one skm:key-version URI")
			}
			digits := strings.TrimPrefix(s, keyVersionURIPrefix)
			v, err := strconv.Atoi(digits)
			// Only the canonical form is accepted, so "01" and "+1" cannot
			// stand for version 1.
			if err != nil || strconv.Itoa(v) != digits || v < 1 || v > MaxKeyVersion {
				return id, fmt.Errorf("invalid key version in %q: want an integer from 1 to %d", s, MaxKeyVersion)
			}
			id.KeyVersion, haveVersion = v, true
		}
	}
	if !havePeer {
		return id, errors.New("missing skm:peer URI")
	}
	if !haveVersion {
		return id, errors.New("missing skm:key-version URI")
	}
	return id, nil
}

// CertIdentity returns the identity a user certificate binds.
func CertIdentity(cert *x509.Certificate) (Identity, error) {
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return Identity{}, fmt.Errorf("certificate key is %T, want Ed25519", cert.PublicKey)
	}
	return ParseIdentity(cert.Subject.CommonName, cert.URIs)
}

// CertPeerID returns the peer ID in a certificate's skm:peer URI.
func CertPeerID(cert *x509.Certificate) (peer.ID, error) {
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, peerURIPrefix) {
			return peer.Decode(strings.TrimPrefix(s, peerURIPrefix))
		}
	}
	return "", errors.New("certificate has no skm:peer URI")
}

// Fingerprint returns the SHA-256 of a certificate's DER encoding as
// uppercase hex pairs separated by colons, the form that
// "openssl x509 -fingerprint -sha256" prints.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	pairs := make([]string, len(sum))
	for i, c := range sum {
		pairs[i] = strings.ToUpper(hex.EncodeToString([]byte{c}))
	}
	return strings.Join(pairs, ":")
}
