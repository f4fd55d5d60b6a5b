package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// DefaultCRLValidity is the time from a CRL's thisUpdate to its
// nextUpdate. The CA signs a new CRL when half of it has passed.
const DefaultCRLValidity = 24 * time.Hour

// Record keys of the CA's revocation state.
const (
	metaCRLNumber = "crl-number" // store.Meta: number of the newest CRL
	certCRL       = "crl"        // store.Certs: newest CRL, DER
)

// The reason codes of RFC 5280 section 5.3.1, by the names the RFC gives
// them. Code 7 is unused.
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"certificateHold":      6,
	"removeFromCRL":        8,
	"privilegeWithdrawn":   9,
	"aACompromise":         10,
}

// Reason codes skm itself uses.
const (
	ReasonUnspecified   = 0
	ReasonKeyCompromise = 1
	ReasonSuperseded    = 4
)

// ParseReason returns the RFC 5280 code of a reason name such as
// "keyCompromise". Names match without regard to case.
func ParseReason(name string) (int, error) {
	for n, code := range reasonCodes {
		if strings.EqualFold(n, name) {
			return code, nil
		}
	}
	names := make([]string, 0, len(reasonCodes))
	for n, code := range reasonCodes {
		if checkReason(code) == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return 0, fmt.Errorf("invalid revocation reason %q: use one of %s", name, strings.Join(names, ", "))
}

// ReasonName returns the RFC 5280 name of a reason code.
func ReasonName(code int) string {
	for n, c := range reasonCodes {
		if c == code {
			return n
		}
	}
	return "reason " + strconv.Itoa(code)
}

// checkReason accepts the reason codes of a permanent revocation. skm
// has no way to lift a revocation, so certificateHold and removeFromCRL
// are rejected.
func checkReason(code int) error {
	switch code {
	case reasonCodes["certificateHold"], reasonCodes["removeFromCRL"]:
		return fmt.Errorf("revocation reason %s is not supported: skm revocations are permanent", ReasonName(code))
	}
	for _, c := range reasonCodes {
		if c == code {
			return nil
		}
	}
	return fmt.Errorf("invalid revocation reason code %d", code)
}

// revokedRecord is the stored form of one revocation.
type revokedRecord struct {
	Reason int       `json:"reason"`
	Time   time.Time `json:"time"`
}

// ErrNotIssued is returned by [Authority.Revoke] for a serial or user the
// CA has no certificate for.
var ErrNotIssued = errors.New("no such certificate")

// ErrAlreadyRevoked is returned by [Authority.Revoke] for a certificate
// that is already revoked.
var ErrAlreadyRevoked = errors.New("certificate already revoked")

// Revoke revokes the certificate named by target, a user name (their
// current certificate) or a serial number in hex, and returns the new
// CRL that lists it. The key of a revoked certificate is never certified
// again.
func (a *Authority) Revoke(target string, reason int) (*x509.RevocationList, error) {
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	crl, err := a.revoke(target, reason)
	if err != nil {
		return nil, err
	}
	a.cfg.Log.Info("certificate revoked", "target", target, "reason", ReasonName(reason),
		"crl_number", crl.Number.String())
	a.published(crl)
	return crl, nil
}

// revoke records the revocation and signs the new CRL in one transaction.
func (a *Authority) revoke(target string, reason int) (*x509.RevocationList, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var crl *x509.RevocationList
	err := a.st.Update(func(tx *store.Tx) error {
		serial, err := resolveTarget(tx, target)
		if err != nil {
			return err
		}
		if err := a.recordRevocation(tx, serial, reason); err != nil {
			return err
		}
		crl, err = a.signCRL(tx)
		return err
	})
	return crl, err
}

// recordRevocation marks serial revoked and its key as never to be
// certified again. The caller signs the new CRL.
func (a *Authority) recordRevocation(tx *store.Tx, serial string, reason int) error {
	if _, err := tx.Get(store.Revoked, serial); err == nil {
		return fmt.Errorf("%s: %w", serial, ErrAlreadyRevoked)
	}
	cert, err := loadIssued(tx, serial)
	if err != nil {
		return err
	}
	rec, err := json.Marshal(revokedRecord{Reason: reason, Time: a.cfg.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	if err := tx.Put(store.Revoked, serial, rec); err != nil {
		return err
	}
	return tx.Put(store.RevokedKeys, keyHash(cert.RawSubjectPublicKeyInfo), []byte(serial))
}

// resolveTarget returns the serial a revocation target names.
func resolveTarget(tx *store.Tx, target string) (string, error) {
	if protocol.ValidateUserName(target) == nil {
		raw, err := tx.Get(store.Users, target)
		if err == nil {
			var u userRecord
			if err := json.Unmarshal(raw, &u); err != nil {
				return "", err
			}
			return u.Serial, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	notIssued := fmt.Errorf("%w: %q is neither a user nor a serial this CA issued", ErrNotIssued, target)
	// Parse the hex as a number, because openssl prints serials in whole
	// bytes and so adds a leading zero to an odd number of digits.
	digits := strings.ReplaceAll(target, ":", "")
	if len(digits) > 2 && strings.EqualFold(digits[:2], "0x") {
		digits = digits[2:]
	}
	n, ok := new(big.Int).SetString(digits, 16)
	if !ok || n.Sign() <= 0 {
		return "", notIssued
	}
	serial := SerialString(n)
	if _, err := tx.Get(store.Issued, serial); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", notIssued
		}
		return "", err
	}
	return serial, nil
}

func loadIssued(tx *store.Tx, serial string) (*x509.Certificate, error) {
	raw, err := tx.Get(store.Issued, serial)
	if err != nil {
		return nil, err
	}
	var rec issuedRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("issued %s: %w", serial, err)
	}
	return x509.ParseCertificate(rec.DER)
}

// keyHash identifies a public key by the SHA-256 of its DER
// SubjectPublicKeyInfo.
func keyHash(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// signCRL signs a CRL of every revocation with the next CRL number and
// stores it.
func (a *Authority) signCRL(tx *store.Tx) (*x509.RevocationList, error) {
	number := big.NewInt(0)
	if raw, err := tx.Get(store.Meta, metaCRLNumber); err == nil {
		if _, ok := number.SetString(string(raw), 10); !ok {
			return nil, fmt.Errorf("stored CRL number %q is invalid", raw)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	number.Add(number, big.NewInt(1))
	var entries []x509.RevocationListEntry
	err := tx.Each(store.Revoked, func(serial string, raw []byte) error {
		var rec revokedRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("revoked %s: %w", serial, err)
		}
		n, ok := new(big.Int).SetString(serial, 16)
		if !ok {
			return fmt.Errorf("revoked serial %q is invalid", serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: rec.Time, ReasonCode: rec.Reason})
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := a.cfg.Now().UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(a.cfg.CRLValidity),
		RevokedCertificateEntries: entries,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, a.cert, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	if err := tx.Put(store.Meta, metaCRLNumber, []byte(number.String())); err != nil {
		return nil, err
	}
	if err := tx.Put(store.Certs, certCRL, der); err != nil {
		return nil, err
	}
	return x509.ParseRevocationList(der)
}

func (a *Authority) published(crl *x509.RevocationList) {
	a.hookMu.Lock()
	fn := a.cfg.OnCRL
	a.hookMu.Unlock()
	if fn != nil {
		fn(crl)
	}
}

// CRL returns the newest CRL, signing a fresh one first if there is none
// or half of the newest one's validity has passed.
func (a *Authority) CRL() (*x509.RevocationList, error) {
	crl, signed, err := a.refreshCRL()
	if err == nil && signed {
		a.cfg.Log.Info("CRL signed", "crl_number", crl.Number.String(), "next_update", crl.NextUpdate)
		a.published(crl)
	}
	return crl, err
}

func (a *Authority) refreshCRL() (crl *x509.RevocationList, signed bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	err = a.st.Update(func(tx *store.Tx) error {
		signed = false
		raw, err := tx.Get(store.Certs, certCRL)
		if err == nil {
			if crl, err = x509.ParseRevocationList(raw); err != nil {
				return fmt.Errorf("stored CRL: %w", err)
			}
			half := crl.ThisUpdate.Add(crl.NextUpdate.Sub(crl.ThisUpdate) / 2)
			if a.cfg.Now().Before(half) {
				return nil
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		crl, err = a.signCRL(tx)
		signed = err == nil
		return err
	})
	return crl, signed, err
}

// revocation returns the stored revocation of serial, if any.
func revocation(tx *store.Tx, serial string) (*revokedRecord, error) {
	raw, err := tx.Get(store.Revoked, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec revokedRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("revoked %s: %w", serial, err)
	}
	return &rec, nil
}

// MaxCRLSize bounds a CRL that skm parses from a peer. An entry takes
// about 40 bytes, so this holds some 25,000 revocations.
const MaxCRLSize = 1 << 20

// VerifyCRL parses a DER CRL and checks that caCert issued and signed it,
// that it has a CRL number, that its nextUpdate follows its thisUpdate,
// and that it lists no serial twice.
func VerifyCRL(der []byte, caCert *x509.Certificate) (*x509.RevocationList, error) {
	if len(der) > MaxCRLSize {
		return nil, fmt.Errorf("CRL of %d bytes exceeds %d", len(der), MaxCRLSize)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	// The parser ignores bytes after the CRL. They are not signed, and a
	// peer could pad a genuine CRL with them before gossip forwards it.
	if len(crl.Raw) != len(der) {
		return nil, fmt.Errorf("parse CRL: %d bytes of trailing data", len(der)-len(crl.Raw))
	}
	if !bytes.Equal(crl.RawIssuer, caCert.RawSubject) {
		return nil, fmt.Errorf("CRL issuer %q is not CA %q", crl.Issuer.CommonName, caCert.Subject.CommonName)
	}
	if err := crl.CheckSignatureFrom(caCert); err != nil {
		return nil, fmt.Errorf("CRL is not signed by CA %q: %w", caCert.Subject.CommonName, err)
	}
	if crl.Number == nil || crl.Number.Sign() <= 0 {
		return nil, errors.New("CRL has no positive CRL number")
	}
	if !crl.NextUpdate.After(crl.ThisUpdate) {
		return nil, errors.New("CRL nextUpdate does not follow its thisUpdate")
	}
	seen := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		key := e.SerialNumber.String()
		if seen[key] {
			return nil, fmt.Errorf("CRL %s lists serial %s more than once", crl.Number, SerialString(e.SerialNumber))
		}
		seen[key] = true
	}
	return crl, nil
}
