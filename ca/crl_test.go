package ca_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
)

// issueTo issues a certificate to a new enrollee named user.
func issueTo(t *testing.T, a *ca.Authority, user string) (*enrollee, *x509.Certificate) {
	t.Helper()
	e := newEnrollee(t, user)
	cert, err := issue(t, a, e, newToken(t, a, user))
	if err != nil {
		t.Fatalf("Issue to %s: %v", user, err)
	}
	return e, cert
}

// revokedEntry returns the entry of serial in crl, or nil.
func revokedEntry(crl *x509.RevocationList, serial *big.Int) *x509.RevocationListEntry {
	for i := range crl.RevokedCertificateEntries {
		if crl.RevokedCertificateEntries[i].SerialNumber.Cmp(serial) == 0 {
			return &crl.RevokedCertificateEntries[i]
		}
	}
	return nil
}

// currentCRL returns a.CRL() and fails the test on an error.
func currentCRL(t *testing.T, a *ca.Authority) *x509.RevocationList {
	t.Helper()
	crl, err := a.CRL()
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	return crl
}

// colonHex formats b as two hex digits per byte, separated by colons, as
// openssl prints serial numbers in text output.
func colonHex(b []byte) string {
	pairs := make([]string, len(b))
	for i, c := range b {
		pairs[i] = hex.EncodeToString([]byte{c})
	}
	return strings.Join(pairs, ":")
}

// alternateCase uppercases every other letter of s.
func alternateCase(s string) string {
	var b strings.Builder
	for i, r := range strings.ToLower(s) {
		if i%2 == 0 {
			r = []rune(strings.ToUpper(string(r)))[0]
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestRevokeTargetForms(t *testing.T) {
	tests := []struct {
		name   string
		target func(user string, serial *big.Int) string
	}{
		{"user name", func(user string, _ *big.Int) string { return user }},
		{"uppercase serial", func(_ string, n *big.Int) string { return ca.SerialString(n) }},
		{"lowercase serial", func(_ string, n *big.Int) string { return strings.ToLower(ca.SerialString(n)) }},
		{"mixed case serial", func(_ string, n *big.Int) string { return alternateCase(ca.SerialString(n)) }},
		{"serial with 0x prefix", func(_ string, n *big.Int) string { return "0x" + n.Text(16) }},
		{"uppercase serial with colons", func(_ string, n *big.Int) string {
			return strings.ToUpper(colonHex(n.Bytes()))
		}},
		// DER encodes a serial whose top bit is set with a leading zero
		// byte, which tools that dump the encoding show.
		{"colons with leading zero byte", func(_ string, n *big.Int) string {
			return "00:" + colonHex(n.Bytes())
		}},
		// openssl prints serials in whole bytes, so an odd number of hex
		// digits gets a leading zero.
		{"serial with leading zeros", func(_ string, n *big.Int) string {
			return "000" + ca.SerialString(n)
		}},
	}
	a, _, clock := newAuthority(t, ca.Config{})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user := fmt.Sprintf("user%d", i)
			_, cert := issueTo(t, a, user)
			target := tc.target(user, cert.SerialNumber)

			crl, err := a.Revoke(target, ca.ReasonKeyCompromise)
			if err != nil {
				t.Fatalf("Revoke(%q): %v", target, err)
			}
			e := revokedEntry(crl, cert.SerialNumber)
			if e == nil {
				t.Fatalf("CRL %s does not list serial %s", crl.Number, ca.SerialString(cert.SerialNumber))
			}
			if e.ReasonCode != ca.ReasonKeyCompromise {
				t.Errorf("reason code = %d, want %d", e.ReasonCode, ca.ReasonKeyCompromise)
			}
			if !e.RevocationTime.Equal(clock.Now()) {
				t.Errorf("revocation time = %s, want %s", e.RevocationTime, clock.Now())
			}
			if got, want := len(crl.RevokedCertificateEntries), i+1; got != want {
				t.Errorf("CRL lists %d certificates, want %d", got, want)
			}
		})
	}
}

func TestCRLNumbersGrow(t *testing.T) {
	clock := newTestClock()
	cfg := ca.Config{CRLValidity: time.Hour, Now: clock.Now}
	a, st, _ := newAuthority(t, cfg)
	issueTo(t, a, "alice")
	issueTo(t, a, "bob")
	issueTo(t, a, "carol")
	reloaded, err := ca.Load(st, cfg)
	if err != nil {
		t.Fatalf("ca.Load: %v", err)
	}

	steps := []struct {
		name string
		do   func() (*x509.RevocationList, error)
		want int64
	}{
		{"first CRL", a.CRL, 1},
		{"revoke alice", func() (*x509.RevocationList, error) { return a.Revoke("alice", ca.ReasonKeyCompromise) }, 2},
		{"CRL while fresh", a.CRL, 2},
		{"CRL past half validity", func() (*x509.RevocationList, error) {
			clock.Advance(31 * time.Minute)
			return a.CRL()
		}, 3},
		{"revoke bob", func() (*x509.RevocationList, error) { return a.Revoke("bob", ca.ReasonSuperseded) }, 4},
		{"re-sign after reload", func() (*x509.RevocationList, error) {
			clock.Advance(time.Hour)
			return reloaded.CRL()
		}, 5},
		{"revoke after reload", func() (*x509.RevocationList, error) {
			return reloaded.Revoke("carol", ca.ReasonUnspecified)
		}, 6},
	}
	last := big.NewInt(0)
	for _, step := range steps {
		crl, err := step.do()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if crl.Number.Cmp(big.NewInt(step.want)) != 0 {
			t.Errorf("%s: CRL number %s, want %d", step.name, crl.Number, step.want)
		}
		if crl.Number.Cmp(last) < 0 {
			t.Errorf("%s: CRL number went down from %s to %s", step.name, last, crl.Number)
		}
		last = crl.Number
	}
}

func TestCRLResignsAfterHalfValidity(t *testing.T) {
	var published []string
	a, _, clock := newAuthority(t, ca.Config{
		CRLValidity: 10 * time.Minute,
		OnCRL:       func(crl *x509.RevocationList) { published = append(published, crl.Number.String()) },
	})
	t0 := clock.Now()
	steps := []struct {
		name       string
		at         time.Duration
		wantNumber int64
		wantThis   time.Duration
	}{
		{"first call signs", 0, 1, 0},
		{"second before half", 5*time.Minute - time.Second, 1, 0},
		{"exactly half validity", 5 * time.Minute, 2, 5 * time.Minute},
		{"second before next half", 10*time.Minute - time.Second, 2, 5 * time.Minute},
		{"past nextUpdate", 30 * time.Minute, 3, 30 * time.Minute},
	}
	for _, step := range steps {
		clock.Set(t0.Add(step.at))
		crl := currentCRL(t, a)
		if crl.Number.Cmp(big.NewInt(step.wantNumber)) != 0 {
			t.Errorf("%s: CRL number %s, want %d", step.name, crl.Number, step.wantNumber)
		}
		if want := t0.Add(step.wantThis); !crl.ThisUpdate.Equal(want) {
			t.Errorf("%s: thisUpdate %s, want %s", step.name, crl.ThisUpdate, want)
		}
		if want := t0.Add(step.wantThis + 10*time.Minute); !crl.NextUpdate.Equal(want) {
			t.Errorf("%s: nextUpdate %s, want %s", step.name, crl.NextUpdate, want)
		}
		if err := crl.CheckSignatureFrom(a.Certificate()); err != nil {
			t.Errorf("%s: CRL signature: %v", step.name, err)
		}
	}
	if want := []string{"1", "2", "3"}; !slices.Equal(published, want) {
		t.Errorf("OnCRL saw CRL numbers %v, want %v", published, want)
	}
}

func TestRevokeAlreadyRevoked(t *testing.T) {
	a, _, _ := newAuthority(t, ca.Config{})
	_, cert := issueTo(t, a, "alice")
	serial := ca.SerialString(cert.SerialNumber)
	first, err := a.Revoke(serial, ca.ReasonKeyCompromise)
	if err != nil {
		t.Fatalf("first Revoke: %v", err)
	}
	for _, target := range []string{serial, strings.ToLower(serial), "alice"} {
		if _, err := a.Revoke(target, ca.ReasonSuperseded); !errors.Is(err, ca.ErrAlreadyRevoked) {
			t.Errorf("Revoke(%q) again returned %v, want ErrAlreadyRevoked", target, err)
		}
	}
	crl := currentCRL(t, a)
	if crl.Number.Cmp(first.Number) != 0 {
		t.Errorf("CRL number %s after rejected revocations, want %s", crl.Number, first.Number)
	}
	e := revokedEntry(crl, cert.SerialNumber)
	if e == nil || e.ReasonCode != ca.ReasonKeyCompromise {
		t.Errorf("CRL entry %+v, want reason %d", e, ca.ReasonKeyCompromise)
	}
}

func TestRevokeNotIssued(t *testing.T) {
	a, _, _ := newAuthority(t, ca.Config{})
	issueTo(t, a, "alice")
	other, _, _ := newAuthority(t, ca.Config{})
	_, foreign := issueTo(t, other, "alice")
	tests := []struct {
		name   string
		target string
	}{
		{"unknown user name", "bob"},
		{"unknown serial", "0123456789ABCDEF"},
		{"serial of another CA", ca.SerialString(foreign.SerialNumber)},
		{"neither name nor hex", "Not A Serial!"},
		{"empty target", ""},
		{"colons only", ":::"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.Revoke(tc.target, ca.ReasonKeyCompromise); !errors.Is(err, ca.ErrNotIssued) {
				t.Errorf("Revoke(%q) returned %v, want ErrNotIssued", tc.target, err)
			}
		})
	}
	crl := currentCRL(t, a)
	if crl.Number.Cmp(big.NewInt(1)) != 0 || len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("CRL %s lists %d certificates, want CRL 1 listing none", crl.Number, len(crl.RevokedCertificateEntries))
	}
}

func TestRevokeReasonCodes(t *testing.T) {
	tests := []struct {
		name  string
		code  int
		valid bool
	}{
		{"unspecified", 0, true},
		{"keyCompromise", 1, true},
		{"cACompromise", 2, true},
		{"affiliationChanged", 3, true},
		{"superseded", 4, true},
		{"cessationOfOperation", 5, true},
		{"privilegeWithdrawn", 9, true},
		{"aACompromise", 10, true},
		{"certificateHold rejected", 6, false},
		{"removeFromCRL rejected", 8, false},
		{"unused code 7", 7, false},
		{"code 11 past range", 11, false},
		{"negative code", -1, false},
	}
	a, st, _ := newAuthority(t, ca.Config{})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user := fmt.Sprintf("user%d", i)
			_, cert := issueTo(t, a, user)
			before := takeSnapshot(t, st)
			crl, err := a.Revoke(user, tc.code)
			if !tc.valid {
				if err == nil {
					t.Fatalf("Revoke with reason code %d succeeded: CRL %s", tc.code, crl.Number)
				}
				checkUnchanged(t, before, takeSnapshot(t, st))
				if e := revokedEntry(currentCRL(t, a), cert.SerialNumber); e != nil {
					t.Errorf("CRL lists %s after a rejected revocation", user)
				}
				return
			}
			if err != nil {
				t.Fatalf("Revoke with reason code %d: %v", tc.code, err)
			}
			e := revokedEntry(crl, cert.SerialNumber)
			if e == nil {
				t.Fatalf("CRL %s does not list %s", crl.Number, user)
			}
			if e.ReasonCode != tc.code {
				t.Errorf("CRL reason code = %d, want %d", e.ReasonCode, tc.code)
			}
		})
	}
}

func TestParseReason(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"exact RFC name", "keyCompromise", 1},
		{"all lowercase", "keycompromise", 1},
		{"all uppercase", "KEYCOMPROMISE", 1},
		{"mixed case", "SuPeRsEdEd", 4},
		{"unspecified", "unspecified", 0},
		{"cACompromise", "cACompromise", 2},
		{"affiliationChanged", "affiliationchanged", 3},
		{"cessationOfOperation", "CessationOfOperation", 5},
		{"privilegeWithdrawn", "privilegeWithdrawn", 9},
		{"aACompromise", "AACOMPROMISE", 10},
		{"certificateHold parses", "certificateHold", 6},
		{"removeFromCRL parses", "removeFromCRL", 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ca.ParseReason(tc.in)
			if err != nil {
				t.Fatalf("ParseReason(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseReason(%q) = %d, want %d", tc.in, got, tc.want)
			}
			if back, err := ca.ParseReason(ca.ReasonName(got)); err != nil || back != got {
				t.Errorf("ParseReason(ReasonName(%d)) = %d, %v", got, back, err)
			}
		})
	}
}

func TestParseReasonUnknownName(t *testing.T) {
	accepted := []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
		"superseded", "cessationOfOperation", "privilegeWithdrawn", "aACompromise"}
	for _, in := range []string{"", "hold", "key compromise", "keyCompromise ", "1", "7"} {
		t.Run(fmt.Sprintf("name %q", in), func(t *testing.T) {
			_, err := ca.ParseReason(in)
			if err == nil {
				t.Fatalf("ParseReason(%q) succeeded", in)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("%q", in)) {
				t.Errorf("error %q does not quote the name", msg)
			}
			for _, name := range accepted {
				if !strings.Contains(msg, name) {
					t.Errorf("error %q does not list %s", msg, name)
				}
			}
			// Revoke rejects these two, so a hint must not offer them.
			for _, name := range []string{"certificateHold", "removeFromCRL"} {
				if strings.Contains(msg, name) {
					t.Errorf("error %q offers %s, which Revoke rejects", msg, name)
				}
			}
		})
	}
	if got := ca.ReasonName(7); got != "reason 7" {
		t.Errorf("ReasonName(7) = %q, want %q", got, "reason 7")
	}
}

func TestRevokedKeyNeverCertifiedAgain(t *testing.T) {
	a, st, clock := newAuthority(t, ca.Config{})
	alice, _ := issueTo(t, a, "alice")
	if _, err := a.Revoke("alice", ca.ReasonKeyCompromise); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	open, err := ca.Load(st, ca.Config{Open: true, Now: clock.Now})
	if err != nil {
		t.Fatalf("ca.Load in open mode: %v", err)
	}
	// withAliceKey returns e with alice's revoked signing key.
	withAliceKey := func(e *enrollee) *enrollee {
		e.key = alice.key
		return e
	}
	tests := []struct {
		name  string
		a     *ca.Authority
		e     *enrollee
		token func() string
	}{
		{"same user fresh token", a, alice, func() string { return newToken(t, a, "alice") }},
		{"next key version", a, withAliceKey(alice.withVersion(t, "alice", 2)), func() string { return newToken(t, a, "alice") }},
		{"other user same key", a, withAliceKey(newEnrollee(t, "bob")), func() string { return newToken(t, a, "bob") }},
		{"open mode same key", open, withAliceKey(newEnrollee(t, "carol")), func() string { return "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := tc.token()
			before := takeSnapshot(t, st)
			_, err := issue(t, tc.a, tc.e, token)
			checkCode(t, err, protocol.CodeKeyRevoked)
			checkUnchanged(t, before, takeSnapshot(t, st))
		})
	}
}

func TestListShowsRevocation(t *testing.T) {
	a, _, _ := newAuthority(t, ca.Config{})
	_, alice := issueTo(t, a, "alice")
	_, bob := issueTo(t, a, "bob")
	if _, err := a.Revoke("bob", ca.ReasonSuperseded); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	list, err := a.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	want := map[string]struct{ status, reason string }{
		ca.SerialString(alice.SerialNumber): {ca.StatusValid, ""},
		ca.SerialString(bob.SerialNumber):   {ca.StatusRevoked, "superseded"},
	}
	if len(list) != len(want) {
		t.Fatalf("List returned %d certificates, want %d", len(list), len(want))
	}
	for _, c := range list {
		w := want[c.Serial]
		if c.Status != w.status || c.Reason != w.reason {
			t.Errorf("%s (%s): status %q, reason %q; want %q, %q", c.User, c.Serial, c.Status, c.Reason, w.status, w.reason)
		}
	}
}

func writeCRLPEM(t *testing.T, path string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCRLOpenSSLVerify(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	// openssl checks times at the real current time, which the test
	// clock starts at.
	a, _, _ := newAuthority(t, ca.Config{})
	_, alice := issueTo(t, a, "alice")
	_, bob := issueTo(t, a, "bob")
	crl, err := a.Revoke("bob", ca.ReasonKeyCompromise)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	crlPath := filepath.Join(dir, "ca.crl")
	alicePath := filepath.Join(dir, "alice.pem")
	bobPath := filepath.Join(dir, "bob.pem")
	writePEM(t, caPath, a.Certificate())
	writeCRLPEM(t, crlPath, crl.Raw)
	writePEM(t, alicePath, alice)
	writePEM(t, bobPath, bob)

	out, err := exec.Command("openssl", "crl", "-in", crlPath, "-CAfile", caPath, "-noout", "-verify").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Errorf("openssl crl -verify: %v\n%s", err, out)
	}

	verify := func(leaf string) (string, error) {
		out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", caPath, "-CRLfile", crlPath, leaf).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(alicePath); err != nil || !strings.Contains(out, alicePath+": OK") {
		t.Errorf("openssl verify -crl_check of a valid certificate: %v\n%s", err, out)
	}
	out2, err := verify(bobPath)
	if err == nil {
		t.Errorf("openssl verify -crl_check accepted the revoked certificate:\n%s", out2)
	}
	if !strings.Contains(out2, "certificate revoked") {
		t.Errorf("openssl verify -crl_check of the revoked certificate does not report it revoked:\n%s", out2)
	}
}

func TestRevokeSerialAsOpenSSLPrints(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	a, _, _ := newAuthority(t, ca.Config{})
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		// parse returns the serial from openssl's output.
		parse func(out string) string
	}{
		{"x509 -serial output", []string{"-noout", "-serial"}, func(out string) string {
			return strings.TrimPrefix(strings.TrimSpace(out), "serial=")
		}},
		{"x509 -text output", []string{"-noout", "-text"}, func(out string) string {
			_, after, _ := strings.Cut(out, "Serial Number:")
			return strings.Fields(after)[0]
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user := fmt.Sprintf("user%d", i)
			_, cert := issueTo(t, a, user)
			path := filepath.Join(dir, user+".pem")
			writePEM(t, path, cert)
			out, err := exec.Command("openssl", append([]string{"x509", "-in", path}, tc.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl x509: %v\n%s", err, out)
			}
			target := tc.parse(string(out))
			crl, err := a.Revoke(target, ca.ReasonKeyCompromise)
			if err != nil {
				t.Fatalf("Revoke(%q) for serial %s: %v", target, ca.SerialString(cert.SerialNumber), err)
			}
			if revokedEntry(crl, cert.SerialNumber) == nil {
				t.Errorf("CRL does not list serial %s", ca.SerialString(cert.SerialNumber))
			}
		})
	}
}

// crlSigner is a CA whose key the test holds, to sign CRLs that an
// Authority never would.
type crlSigner struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
}

func newCRLSigner(t *testing.T, name string) *crlSigner {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"skm"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &crlSigner{cert: cert, key: key}
}

// crlTemplate returns a CRL template with number that lists serials,
// valid for an hour from now.
func crlTemplate(number int64, serials ...int64) *x509.RevocationList {
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: now,
		NextUpdate: now.Add(time.Hour),
	}
	for _, n := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: big.NewInt(n), RevocationTime: now, ReasonCode: ca.ReasonKeyCompromise,
		})
	}
	return tmpl
}

// sign signs tmpl as the CA issuer names, with s's key.
func (s *crlSigner) sign(t *testing.T, tmpl *x509.RevocationList, issuer *x509.Certificate) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, s.key)
	if err != nil {
		t.Fatalf("create CRL: %v", err)
	}
	return der
}

// resign decodes a CRL, lets edit change its TBSCertList, and signs the
// result with s's key: for CRLs that x509.CreateRevocationList refuses to
// build.
func (s *crlSigner) resign(t *testing.T, der []byte, edit func(*pkix.TBSCertificateList)) []byte {
	t.Helper()
	var list pkix.CertificateList
	if rest, err := asn1.Unmarshal(der, &list); err != nil || len(rest) > 0 {
		t.Fatalf("decode CRL: %v, %d trailing bytes", err, len(rest))
	}
	list.TBSCertList.Raw = nil
	edit(&list.TBSCertList)
	tbs, err := asn1.Marshal(list.TBSCertList)
	if err != nil {
		t.Fatalf("encode TBSCertList: %v", err)
	}
	list.TBSCertList.Raw = tbs
	list.SignatureValue = asn1.BitString{Bytes: ed25519.Sign(s.key, tbs), BitLength: 8 * ed25519.SignatureSize}
	out, err := asn1.Marshal(list)
	if err != nil {
		t.Fatalf("encode CRL: %v", err)
	}
	return out
}

// oidCRLNumber is the CRL number extension of RFC 5280 section 5.2.3.
var oidCRLNumber = asn1.ObjectIdentifier{2, 5, 29, 20}

func TestVerifyCRL(t *testing.T) {
	signer := newCRLSigner(t, "Test CA")
	sameName := newCRLSigner(t, "Test CA")
	otherName := newCRLSigner(t, "Other CA")
	renamed := *signer.cert
	renamed.RawSubject = nil
	renamed.Subject = pkix.Name{CommonName: "Renamed CA", Organization: []string{"skm"}}

	// 128-bit serials, as the CA issues, make each entry some 48 bytes.
	huge := crlTemplate(1)
	for i := range ca.MaxCRLSize / 44 {
		serial := new(big.Int).Lsh(big.NewInt(int64(i)+1), 100)
		huge.RevokedCertificateEntries = append(huge.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: serial, RevocationTime: huge.ThisUpdate, ReasonCode: ca.ReasonKeyCompromise,
		})
	}
	oversized := signer.sign(t, huge, signer.cert)
	if len(oversized) <= ca.MaxCRLSize {
		t.Fatalf("oversized CRL has %d bytes, not over %d", len(oversized), ca.MaxCRLSize)
	}
	valid := signer.sign(t, crlTemplate(7, 10, 11), signer.cert)

	tests := []struct {
		name    string
		der     []byte
		wantErr string
	}{
		{"valid CRL accepted", valid, ""},
		{"empty CRL accepted", signer.sign(t, crlTemplate(1), signer.cert), ""},
		{"forged by same-named CA", sameName.sign(t, crlTemplate(8, 10), sameName.cert), "is not signed by CA"},
		{"signed by another CA", otherName.sign(t, crlTemplate(8, 10), otherName.cert), "is not CA"},
		{"wrong issuer name", signer.sign(t, crlTemplate(8, 10), &renamed), "is not CA"},
		{"zero CRL number", signer.sign(t, crlTemplate(0, 10), signer.cert), "no positive CRL number"},
		{"no CRL number", signer.resign(t, valid, func(tbs *pkix.TBSCertificateList) {
			tbs.Extensions = slices.DeleteFunc(tbs.Extensions, func(e pkix.Extension) bool {
				return e.Id.Equal(oidCRLNumber)
			})
		}), "no positive CRL number"},
		{"nextUpdate equals thisUpdate", signer.sign(t, func() *x509.RevocationList {
			tmpl := crlTemplate(8, 10)
			tmpl.NextUpdate = tmpl.ThisUpdate
			return tmpl
		}(), signer.cert), "nextUpdate does not follow"},
		{"nextUpdate before thisUpdate", signer.resign(t, valid, func(tbs *pkix.TBSCertificateList) {
			tbs.NextUpdate = tbs.ThisUpdate.Add(-time.Second)
		}), "nextUpdate does not follow"},
		{"nextUpdate missing", signer.resign(t, valid, func(tbs *pkix.TBSCertificateList) {
			tbs.NextUpdate = time.Time{}
		}), "nextUpdate does not follow"},
		{"serial listed twice", signer.sign(t, crlTemplate(8, 10, 11, 10), signer.cert), "more than once"},
		{"oversized input", oversized, "exceeds"},
		{"trailing bytes", append(slices.Clip(valid), 0), "parse CRL"},
		{"truncated CRL", valid[:len(valid)-1], "parse CRL"},
		{"empty input", nil, "parse CRL"},
		{"certificate not CRL", signer.cert.Raw, "parse CRL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			crl, err := ca.VerifyCRL(tc.der, signer.cert)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifyCRL: %v", err)
				}
				if crl == nil || !bytes.Equal(crl.Raw, tc.der) {
					t.Errorf("VerifyCRL returned a CRL other than its input")
				}
				return
			}
			if err == nil {
				t.Fatalf("VerifyCRL accepted the CRL")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("VerifyCRL error %q does not contain %q", err, tc.wantErr)
			}
			if crl != nil {
				t.Errorf("VerifyCRL returned CRL %s with an error", crl.Number)
			}
		})
	}
}

func TestVerifyCRLFromAuthority(t *testing.T) {
	a, _, _ := newAuthority(t, ca.Config{})
	issueTo(t, a, "alice")
	revoked, err := a.Revoke("alice", ca.ReasonKeyCompromise)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	crl, err := ca.VerifyCRL(revoked.Raw, a.Certificate())
	if err != nil {
		t.Fatalf("VerifyCRL of the CA's own CRL: %v", err)
	}
	if crl.Number.Cmp(revoked.Number) != 0 || len(crl.RevokedCertificateEntries) != 1 {
		t.Errorf("VerifyCRL returned CRL %s with %d entries, want CRL %s with 1",
			crl.Number, len(crl.RevokedCertificateEntries), revoked.Number)
	}
	other, _, _ := newAuthority(t, ca.Config{})
	if _, err := ca.VerifyCRL(revoked.Raw, other.Certificate()); err == nil {
		t.Error("VerifyCRL accepted the CRL against another CA of the same name")
	}
}
