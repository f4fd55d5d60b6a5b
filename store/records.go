package store

import (
	"errors"
	"fmt"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// Table is a named group of records. A record's badger key is the table
// name, a slash and the record key.
type Table string

// The tables used by skm. Nodes and CAs use different subsets.
const (
	// Keys contains private keys, by purpose and version.
	Keys Table = "key"
	// Certs contains certificates: the trust anchor and a node's own.
	Certs Table = "cert"
	// Meta contains small settings such as the user name.
	Meta Table = "meta"
	// Issued contains every certificate a CA issued, by serial number.
	Issued Table = "issued"
	// Users maps a user name to the serial of the CA's newest certificate
	// for that user.
	Users Table = "user"
	// Tokens contains enrollment tokens, by the SHA-256 of the token.
	Tokens Table = "token"
	// Peers maps a libp2p peer ID to the user a CA certified it for.
	Peers Table = "peer"
	// Addrs maps a user name to the multiaddrs the user's node last
	// announced to the CA.
	Addrs Table = "addrs"
	// Contacts maps a user name to what a node knows of that user: peer
	// ID, certificate and addresses.
	Contacts Table = "contact"
	// Messages contains a node's sent and received messages, keyed by
	// the other user's name and a local sequence number.
	Messages Table = "msg"
	// MessageIDs maps a message ID to its key in Messages.
	MessageIDs Table = "msgid"
	// Revoked maps the serial of a revoked certificate to its reason and
	// time, on a CA.
	Revoked Table = "revoked"
	// RevokedKeys contains the SHA-256 of every public key a CA revoked a
	// certificate for; the CA never certifies such a key again.
	RevokedKeys Table = "revokedkey"
	// Outbox lists the messages not yet acknowledged by their recipient,
	// keyed like Messages, in the order they must be delivered.
	Outbox Table = "outbox"
)

// MaxValueSize bounds one record. Records are keys, certificates and small
// metadata, so anything larger is a bug in the caller.
const MaxValueSize = 1 << 20

func recordKey(t Table, key string) []byte {
	return []byte(string(t) + "/" + key)
}

// Tx is a read or read-write transaction. It is valid only inside the
// function passed to [Store.View] or [Store.Update].
type Tx struct {
	txn *badger.Txn
}

// Get returns a copy of the record, or [ErrNotFound].
func (tx *Tx) Get(t Table, key string) ([]byte, error) {
	item, err := tx.txn.Get(recordKey(t, key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s %q: %w", t, key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %q: %w", t, key, err)
	}
	return item.ValueCopy(nil)
}

// Put creates or replaces a record.
func (tx *Tx) Put(t Table, key string, value []byte) error {
	if len(value) > MaxValueSize {
		return fmt.Errorf("%s %q: value of %d bytes exceeds %d", t, key, len(value), MaxValueSize)
	}
	if err := tx.txn.Set(recordKey(t, key), value); err != nil {
		return fmt.Errorf("write %s %q: %w", t, key, err)
	}
	return nil
}

// Insert creates a record and returns [ErrExists] if the key is taken.
func (tx *Tx) Insert(t Table, key string, value []byte) error {
	_, err := tx.txn.Get(recordKey(t, key))
	if err == nil {
		return fmt.Errorf("%s %q: %w", t, key, ErrExists)
	}
	if !errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("read %s %q: %w", t, key, err)
	}
	return tx.Put(t, key, value)
}

// Delete removes a record. Deleting a missing record is not an error.
func (tx *Tx) Delete(t Table, key string) error {
	if err := tx.txn.Delete(recordKey(t, key)); err != nil {
		return fmt.Errorf("delete %s %q: %w", t, key, err)
	}
	return nil
}

// Each calls fn for every record of t in key order and stops at the first
// error fn returns.
func (tx *Tx) Each(t Table, fn func(key string, value []byte) error) error {
	return tx.EachFrom(t, "", "", fn)
}

// EachFrom calls fn, in key order, for every record of t whose key starts
// with prefix and is not below start, and stops at the first error fn
// returns. Seeking to start skips the deletion markers of removed records
// before it, which a scan from the beginning of prefix would walk.
func (tx *Tx) EachFrom(t Table, prefix, start string, fn func(key string, value []byte) error) error {
	tablePrefix := recordKey(t, "")
	it := tx.txn.NewIterator(badger.IteratorOptions{Prefix: recordKey(t, prefix)})
	defer it.Close()
	seek := recordKey(t, prefix)
	if start > prefix {
		seek = recordKey(t, start)
	}
	for it.Seek(seek); it.Valid(); it.Next() {
		item := it.Item()
		value, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read %s: %w", t, err)
		}
		key := strings.TrimPrefix(string(item.Key()), string(tablePrefix))
		if err := fn(key, value); err != nil {
			return err
		}
	}
	return nil
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.db.View(func(txn *badger.Txn) error { return fn(&Tx{txn}) })
}

// Update runs fn in a read-write transaction and commits it if fn returns
// nil. Either all of fn's writes reach the disk or none does. Update
// retries fn when a concurrent transaction conflicts with it, so fn must
// not have effects outside the transaction.
func (s *Store) Update(fn func(tx *Tx) error) error {
	const attempts = 8
	var err error
	for range attempts {
		err = s.db.Update(func(txn *badger.Txn) error { return fn(&Tx{txn}) })
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

// Get returns a copy of one record, or [ErrNotFound].
func (s *Store) Get(t Table, key string) ([]byte, error) {
	var value []byte
	err := s.View(func(tx *Tx) error {
		var err error
		value, err = tx.Get(t, key)
		return err
	})
	return value, err
}

// Put creates or replaces one record.
func (s *Store) Put(t Table, key string, value []byte) error {
	return s.Update(func(tx *Tx) error { return tx.Put(t, key, value) })
}
