package node

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Contact is what a node knows of another user.
type Contact struct {
	User   string  `json:"user"`
	PeerID peer.ID `json:"peer_id"`
	// Certificate is the newest certificate seen for the user, DER.
	Certificate []byte    `json:"certificate,omitempty"`
	KeyVersion  int       `json:"key_version,omitempty"`
	Addrs       []string  `json:"addrs,omitempty"`
	Updated     time.Time `json:"updated"`
}

// maxContactAddrs bounds the addresses kept per contact.
const maxContactAddrs = 16

// ErrUnknownUser is returned when a node has no contact for a user name.
var ErrUnknownUser = errors.New("unknown user")

func getContact(st *store.Store, user string) (*Contact, error) {
	raw, err := st.Get(store.Contacts, user)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w %q: connect to the user's node with --peer, or ask the CA to list the user", ErrUnknownUser, user)
	}
	if err != nil {
		return nil, err
	}
	var c Contact
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("contact %q: %w", user, err)
	}
	return &c, nil
}

// saveContact records a verified certificate for its user, with the
// addresses the peer is known at. A certificate with an older key
// version than the stored one does not replace it.
func saveContact(st *store.Store, cert *x509.Certificate, addrs []ma.Multiaddr, now time.Time) (*Contact, error) {
	id, err := protocol.CertIdentity(cert)
	if err != nil {
		return nil, err
	}
	var saved Contact
	err = st.Update(func(tx *store.Tx) error {
		c := Contact{User: id.User}
		raw, err := tx.Get(store.Contacts, id.User)
		if err == nil {
			if err := json.Unmarshal(raw, &c); err != nil {
				return fmt.Errorf("contact %q: %w", id.User, err)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if id.KeyVersion >= c.KeyVersion {
			c.PeerID, c.KeyVersion, c.Certificate = id.PeerID, id.KeyVersion, cert.Raw
		}
		c.Addrs = mergeAddrs(c.Addrs, addrs)
		c.Updated = now.UTC()
		out, err := json.Marshal(c)
		if err != nil {
			return err
		}
		saved = c
		return tx.Put(store.Contacts, id.User, out)
	})
	return &saved, err
}

// mergeAddrs puts fresh addresses first and keeps at most
// maxContactAddrs.
func mergeAddrs(old []string, fresh []ma.Multiaddr) []string {
	out := make([]string, 0, len(old)+len(fresh))
	for _, a := range fresh {
		if s := a.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range old {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) > maxContactAddrs {
		out = out[:maxContactAddrs]
	}
	return out
}

func listContacts(st *store.Store) ([]Contact, error) {
	var out []Contact
	err := st.View(func(tx *store.Tx) error {
		return tx.Each(store.Contacts, func(user string, raw []byte) error {
			var c Contact
			if err := json.Unmarshal(raw, &c); err != nil {
				return fmt.Errorf("contact %q: %w", user, err)
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// multiaddrs parses c's stored addresses, skipping any that no longer
// parse.
func (c *Contact) multiaddrs() []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(c.Addrs))
	for _, s := range c.Addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}
