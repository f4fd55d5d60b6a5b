package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Bounds on a token's lifetime.
const (
	DefaultTokenTTL = 24 * time.Hour
	MinTokenTTL     = time.Minute
	MaxTokenTTL     = 30 * 24 * time.Hour
)

// Token is a one-time enrollment token bound to one user name.
type Token struct {
	Value   string    `json:"token"`
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

// tokenRecord is the stored form of a token. The token itself is
// never stored, only its SHA-256, which is also the record key.
type tokenRecord struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
	UsedAt  time.Time `json:"used_at,omitzero"`
	Serial  string    `json:"serial,omitempty"`
}

// NewToken creates a token that lets user enroll once within ttl.
func (a *Authority) NewToken(user string, ttl time.Duration) (Token, error) {
	if err := protocol.ValidateUserName(user); err != nil {
		return Token{}, err
	}
	if ttl < MinTokenTTL || ttl > MaxTokenTTL {
		return Token{}, fmt.Errorf("invalid token lifetime %s: use %s to %s", ttl, MinTokenTTL, MaxTokenTTL)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Token{}, err
	}
	t := Token{
		Value:   base64.RawURLEncoding.EncodeToString(secret),
		User:    user,
		Expires: a.cfg.Now().Add(ttl).UTC().Truncate(time.Second),
	}
	rec, err := json.Marshal(tokenRecord{User: user, Expires: t.Expires})
	if err != nil {
		return Token{}, err
	}
	err = a.st.Update(func(tx *store.Tx) error {
		return tx.Insert(store.Tokens, tokenKey(t.Value), rec)
	})
	if err != nil {
		return Token{}, fmt.Errorf("save token: %w", err)
	}
	a.cfg.Log.Info("enrollment token created", "user", user, "expires", t.Expires)
	return t, nil
}

func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// useToken checks that token lets user enroll now and marks it used by
// serial, inside the issuing transaction.
func (a *Authority) useToken(tx *store.Tx, token, user, serial string) error {
	if token == "" {
		return protocol.Errorf(protocol.CodeBadToken,
			"an enrollment token is required: ask the CA operator to run 'skm ca token %s'", user)
	}
	raw, err := tx.Get(store.Tokens, tokenKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return protocol.Errorf(protocol.CodeBadToken,
			"unknown enrollment token: check it, or ask the CA operator for a new one")
	}
	if err != nil {
		return err
	}
	var rec tokenRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("token record: %w", err)
	}
	now := a.cfg.Now()
	switch {
	case !rec.UsedAt.IsZero():
		return protocol.Errorf(protocol.CodeTokenUsed,
			"the enrollment token was already used at %s: ask the CA operator for a new one",
			rec.UsedAt.Format(time.RFC3339))
	case now.After(rec.Expires):
		return protocol.Errorf(protocol.CodeTokenExpired,
			"the enrollment token expired at %s: ask the CA operator for a new one",
			rec.Expires.Format(time.RFC3339))
	case rec.User != user:
		return protocol.Errorf(protocol.CodeBadToken, "the enrollment token is for another user, not %q", user)
	}
	rec.UsedAt = now.UTC().Truncate(time.Second)
	rec.Serial = serial
	updated, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Put(store.Tokens, tokenKey(token), updated)
}
