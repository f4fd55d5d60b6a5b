package node

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/skm-p2p/skm/store"
)

// Message states.
const (
	StateQueued    = "queued"    // sent by us, not yet acknowledged
	StateDelivered = "delivered" // sent by us and acknowledged
	StateReceived  = "received"  // sent to us
)

// Message is one chat message as a node stores it.
type Message struct {
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
	Text string `json:"text"`
	// Sent is the sender's clock when the message was written.
	Sent time.Time `json:"sent"`
	// Delivered is when the recipient acknowledged an outgoing message,
	// or when an incoming message arrived.
	Delivered time.Time `json:"delivered,omitzero"`
	State     string    `json:"state"`
}

// Peer returns the other party of m, seen from user.
func (m *Message) Peer(user string) string {
	if m.From == user {
		return m.To
	}
	return m.From
}

const metaMessageSeq = "message-seq" // store.Meta: last local sequence number

// messageKey orders a conversation: the peer's user name, then a
// zero-padded local sequence number, so Each walks it oldest first.
func messageKey(peerUser string, seq uint64) string {
	return fmt.Sprintf("%s/%020d", peerUser, seq)
}

// nextSeq returns the next local message sequence number.
func nextSeq(tx *store.Tx) (uint64, error) {
	var seq uint64
	raw, err := tx.Get(store.Meta, metaMessageSeq)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return 0, err
	default:
		if seq, err = strconv.ParseUint(string(raw), 10, 64); err != nil {
			return 0, fmt.Errorf("stored message sequence %q is invalid", raw)
		}
	}
	seq++
	return seq, tx.Put(store.Meta, metaMessageSeq, []byte(strconv.FormatUint(seq, 10)))
}

// newMessageID returns 16 random bytes as hex.
func newMessageID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Message IDs are indexed per direction and, for incoming messages, per
// sender, so that one peer cannot collide with another's IDs.
func outgoingIDKey(id string) string       { return "out/" + id }
func incomingIDKey(from, id string) string { return "in/" + from + "/" + id }

// queueMessage records an outgoing message and adds it to the outbox, in
// one transaction.
func queueMessage(st *store.Store, m *Message) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return st.Update(func(tx *store.Tx) error {
		seq, err := nextSeq(tx)
		if err != nil {
			return err
		}
		key := messageKey(m.To, seq)
		if err := tx.Insert(store.MessageIDs, outgoingIDKey(m.ID), []byte(key)); err != nil {
			return err
		}
		if err := tx.Put(store.Messages, key, raw); err != nil {
			return err
		}
		return tx.Put(store.Outbox, key, []byte(m.ID))
	})
}

// markDelivered records user's acknowledgement of an outgoing message
// and removes it from the outbox. It reports false for an ID that is not
// in the outbox, such as a duplicate acknowledgement, and for a message
// to another user.
func markDelivered(st *store.Store, user, id string, at time.Time) (bool, error) {
	var changed bool
	err := st.Update(func(tx *store.Tx) error {
		changed = false
		keyRaw, err := tx.Get(store.MessageIDs, outgoingIDKey(id))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		key := string(keyRaw)
		if _, err := tx.Get(store.Outbox, key); errors.Is(err, store.ErrNotFound) {
			return nil
		}
		m, err := getMessage(tx, key)
		if err != nil {
			return err
		}
		if m.To != user {
			return nil
		}
		m.State, m.Delivered = StateDelivered, at.UTC()
		raw, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := tx.Put(store.Messages, key, raw); err != nil {
			return err
		}
		changed = true
		return tx.Delete(store.Outbox, key)
	})
	return changed, err
}

// saveIncoming records a received message. It reports false, and stores
// nothing, if the message was received before.
func saveIncoming(st *store.Store, m *Message) (bool, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	var isNew bool
	err = st.Update(func(tx *store.Tx) error {
		isNew = false
		seq, err := nextSeq(tx)
		if err != nil {
			return err
		}
		key := messageKey(m.From, seq)
		err = tx.Insert(store.MessageIDs, incomingIDKey(m.From, m.ID), []byte(key))
		if errors.Is(err, store.ErrExists) {
			return nil
		}
		if err != nil {
			return err
		}
		isNew = true
		return tx.Put(store.Messages, key, raw)
	})
	if !isNew {
		// The sequence number bump of a duplicate is harmless: numbers
		// only order a conversation and may have gaps.
		return false, err
	}
	return true, err
}

func getMessage(tx *store.Tx, key string) (*Message, error) {
	raw, err := tx.Get(store.Messages, key)
	if err != nil {
		return nil, err
	}
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("message %s: %w", key, err)
	}
	return &m, nil
}

// pendingMessages returns the outbox of peerUser, oldest first, and the
// key of the oldest. The scan starts at start, a key returned by an
// earlier call: every message below it has been delivered, and new ones
// sort after it, because sequence numbers only grow.
func pendingMessages(st *store.Store, peerUser, start string) ([]*Message, string, error) {
	var out []*Message
	first := ""
	err := st.View(func(tx *store.Tx) error {
		return tx.EachFrom(store.Outbox, peerUser+"/", start, func(key string, _ []byte) error {
			m, err := getMessage(tx, key)
			if err != nil {
				return err
			}
			if first == "" {
				first = key
			}
			out = append(out, m)
			return nil
		})
	})
	return out, first, err
}

// outboxUsers returns the users that have messages waiting.
func outboxUsers(st *store.Store) ([]string, error) {
	seen := map[string]bool{}
	var users []string
	err := st.View(func(tx *store.Tx) error {
		return tx.Each(store.Outbox, func(key string, _ []byte) error {
			user, _, _ := strings.Cut(key, "/")
			if !seen[user] {
				seen[user] = true
				users = append(users, user)
			}
			return nil
		})
	})
	return users, err
}

// history returns every message exchanged with peerUser, oldest first.
func history(st *store.Store, peerUser string) ([]*Message, error) {
	var out []*Message
	err := st.View(func(tx *store.Tx) error {
		return tx.Each(store.Messages, func(key string, raw []byte) error {
			if !strings.HasPrefix(key, peerUser+"/") {
				return nil
			}
			var m Message
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("message %s: %w", key, err)
			}
			out = append(out, &m)
			return nil
		})
	})
	return out, err
}

// Wire bodies of data and acknowledgement frames. A data body is the
// 16-byte message ID, the send time in Unix nanoseconds (8 bytes,
// big-endian) and the UTF-8 text. An acknowledgement body is the ID.
const (
	messageIDSize  = 16
	dataHeaderSize = messageIDSize + 8
)

func encodeData(m *Message) ([]byte, error) {
	id, err := hex.DecodeString(m.ID)
	if err != nil || len(id) != messageIDSize {
		return nil, fmt.Errorf("invalid message ID %q", m.ID)
	}
	body := make([]byte, dataHeaderSize+len(m.Text))
	copy(body, id)
	binary.BigEndian.PutUint64(body[messageIDSize:], uint64(m.Sent.UnixNano()))
	copy(body[dataHeaderSize:], m.Text)
	return body, nil
}

func decodeData(body []byte) (id string, sent time.Time, text string, err error) {
	if len(body) < dataHeaderSize {
		return "", time.Time{}, "", fmt.Errorf("data frame of %d bytes is shorter than its %d-byte header", len(body), dataHeaderSize)
	}
	id = hex.EncodeToString(body[:messageIDSize])
	sent = time.Unix(0, int64(binary.BigEndian.Uint64(body[messageIDSize:]))).UTC()
	return id, sent, string(body[dataHeaderSize:]), nil
}

func decodeAck(body []byte) (string, error) {
	if len(body) != messageIDSize {
		return "", fmt.Errorf("acknowledgement of %d bytes, want %d", len(body), messageIDSize)
	}
	return hex.EncodeToString(body), nil
}
