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

// Certificate states reported by [Status] and [Check].
const (
	StatusValid       = "valid"
	StatusExpired     = "expired"
	StatusNotYetValid = "not yet valid"
	StatusRevoked     = "revoked"
	// StatusStale is reported for a certificate that is otherwise valid
	// when the newest CRL at hand is past its nextUpdate: the certificate
	// may have been revoked since, so it is not reported valid.
	StatusStale = "unknown (stale CRL)"
)

// CertStatus is the state of a certificate, with the revocation details
// when it is revoked.
type CertStatus struct {
	State     string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Check returns the state of cert at now against crl, which must be a
// CRL of cert's issuer that the caller has verified. A revocation is
// reported first, because it is permanent; then a validity period that
// excludes now; then a CRL past its nextUpdate (or no CRL) as stale.
func Check(cert *x509.Certificate, crl *x509.RevocationList, now time.Time) CertStatus {
	if crl != nil {
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return CertStatus{State: StatusRevoked, Reason: ReasonName(e.ReasonCode), RevokedAt: e.RevocationTime.UTC()}
			}
		}
	}
	if s := Status(cert, now); s != StatusValid {
		return CertStatus{State: s}
	}
	if crl == nil || now.After(crl.NextUpdate) {
		return CertStatus{State: StatusStale}
	}
	return CertStatus{State: StatusValid}
}

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
	// Reason is the revocation reason of a revoked certificate.
	Reason string `json:"reason,omitempty"`

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
			revoked, err := revocation(tx, serial)
			if err != nil {
				return err
			}
			status, reason := Status(cert, now), ""
			if revoked != nil {
				status, reason = StatusRevoked, ReasonName(revoked.Reason)
			}
			out = append(out, IssuedCert{
				Serial:     serial,
				User:       rec.User,
				KeyVersion: rec.KeyVersion,
				PeerID:     rec.PeerID,
				NotBefore:  cert.NotBefore,
				NotAfter:   cert.NotAfter,
				Status:     status,
				Reason:     reason,
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
