package ca

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/skm-p2p/skm/store"
)

// Certificate states reported by [Status].
const (
	StatusValid       = "valid"
	StatusExpired     = "expired"
	StatusNotYetValid = "not yet valid"
)

// Status returns the state of cert at now from its validity period alone.
// Both bounds are inclusive, as RFC 5280 section 4.1.2.5 defines them: a
// certificate is still valid at exactly its NotAfter second.
func Status(cert *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(cert.NotBefore):
		return StatusNotYetValid
	case now.After(cert.NotAfter):
		return StatusExpired
	default:
		return StatusValid
	}
}

// IssuedCert describes one certificate the CA issued.
type IssuedCert struct {
	Serial     string    `json:"serial"`
	User       string    `json:"user"`
	KeyVersion int       `json:"key_version"`
	PeerID     string    `json:"peer_id"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	Status     string    `json:"status"`

	issued time.Time
}

// issuedRecord is the stored form of an issued certificate.
type issuedRecord struct {
	User       string `json:"user"`
	KeyVersion int    `json:"key_version"`
	PeerID     string `json:"peer_id"`
	DER        []byte `json:"der"`
	// Issued is when the CA signed the certificate, to the nanosecond,
	// which orders [Authority.List].
	Issued time.Time `json:"issued"`
}

// userRecord points at a user's newest certificate.
type userRecord struct {
	Serial     string `json:"serial"`
	KeyVersion int    `json:"key_version"`
}

// List returns every certificate the CA issued, oldest first.
func (a *Authority) List() ([]IssuedCert, error) {
	var out []IssuedCert
	now := a.cfg.Now()
	err := a.st.View(func(tx *store.Tx) error {
		return tx.Each(store.Issued, func(serial string, raw []byte) error {
			var rec issuedRecord
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("issued %s: %w", serial, err)
			}
			cert, err := x509.ParseCertificate(rec.DER)
			if err != nil {
				return fmt.Errorf("issued %s: %w", serial, err)
			}
			out = append(out, IssuedCert{
				Serial:     serial,
				User:       rec.User,
				KeyVersion: rec.KeyVersion,
				PeerID:     rec.PeerID,
				NotBefore:  cert.NotBefore,
				NotAfter:   cert.NotAfter,
				Status:     Status(cert, now),
				issued:     rec.Issued,
			})
			return nil
		})
	})
	sortIssued(out)
	return out, err
}

func sortIssued(certs []IssuedCert) {
	slices.SortFunc(certs, func(x, y IssuedCert) int {
		if c := x.issued.Compare(y.issued); c != 0 {
			return c
		}
		return strings.Compare(x.Serial, y.Serial)
	})
}
