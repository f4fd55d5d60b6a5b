package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/internal/localapi"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// cheapKDF keeps store creation fast. It is far below what a real store
// uses.
var cheapKDF = &store.Options{KDF: &store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}}

const passphrase = "correct horse battery staple"

func newStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Create(dir, []byte(passphrase), cheapKDF)
	if err != nil {
		t.Fatalf("create store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testClock is a settable clock for ca.Config.Now, safe for concurrent
// use by the enrollment handler.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

// newTestClock returns a clock set to the current time, truncated to the
// second as certificate times are.
func newTestClock() *testClock {
	return &testClock{now: time.Now().Truncate(time.Second)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

func (c *testClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// newAuthority creates a CA in a fresh store. A nil cfg.Now is replaced
// by a new testClock, which is returned.
func newAuthority(t *testing.T, cfg ca.Config) (*ca.Authority, *store.Store, *testClock) {
	t.Helper()
	clock := newTestClock()
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	st := newStore(t, t.TempDir())
	a, err := ca.Init(st, "Test CA", cfg)
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	return a, st, clock
}

// enrollee is one user's key material: a libp2p identity and the
// signing key of one key version.
type enrollee struct {
	user    string
	version int
	peerKey p2pcrypto.PrivKey
	peer    peer.ID
	key     ed25519.PrivateKey
	// host is the enrollee's libp2p host, started on first use and
	// shared with enrollees derived from this one.
	host *host.Host
}

func newEnrollee(t *testing.T, user string) *enrollee {
	t.Helper()
	peerKey, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(peerKey)
	if err != nil {
		t.Fatal(err)
	}
	return &enrollee{user: user, version: 1, peerKey: peerKey, peer: id, key: newSigningKey(t), host: new(host.Host)}
}

// withVersion returns an enrollee on the same peer with a fresh signing
// key for user and version.
func (e *enrollee) withVersion(t *testing.T, user string, version int) *enrollee {
	t.Helper()
	next := *e
	next.user, next.version, next.key = user, version, newSigningKey(t)
	return &next
}

func newSigningKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func (e *enrollee) identity() protocol.Identity {
	return protocol.Identity{User: e.user, KeyVersion: e.version, PeerID: e.peer}
}

// csr returns the CSR that an honest node sends.
func (e *enrollee) csr(t *testing.T) []byte {
	t.Helper()
	id := e.identity()
	return createCSR(t, e.key, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.User},
		URIs:    id.URIs(),
	})
}

func createCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return der
}

func parseCSR(t *testing.T, der []byte) *x509.CertificateRequest {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("parse CSR: %v", err)
	}
	return csr
}

func newToken(t *testing.T, a *ca.Authority, user string) string {
	t.Helper()
	tok, err := a.NewToken(user, ca.DefaultTokenTTL)
	if err != nil {
		t.Fatalf("NewToken(%q): %v", user, err)
	}
	return tok.Value
}

// issue calls a.Issue with the honest CSR of e, without the network.
func issue(t *testing.T, a *ca.Authority, e *enrollee, token string) (*x509.Certificate, error) {
	t.Helper()
	return a.Issue(ca.Request{Peer: e.peer, CSR: parseCSR(t, e.csr(t)), Token: token})
}

// snapshot is the content of the CA's tables, by table and record key.
type snapshot map[store.Table]map[string]string

func takeSnapshot(t *testing.T, st *store.Store) snapshot {
	t.Helper()
	snap := snapshot{}
	err := st.View(func(tx *store.Tx) error {
		for _, table := range []store.Table{store.Issued, store.Users, store.Peers, store.Tokens} {
			records := map[string]string{}
			err := tx.Each(table, func(key string, value []byte) error {
				records[key] = string(value)
				return nil
			})
			if err != nil {
				return err
			}
			snap[table] = records
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the CA tables: %v", err)
	}
	return snap
}

// checkUnchanged fails the test for every record that differs between
// the snapshots.
func checkUnchanged(t *testing.T, before, after snapshot) {
	t.Helper()
	for table, records := range before {
		for key, value := range records {
			got, ok := after[table][key]
			switch {
			case !ok:
				t.Errorf("%s %q was deleted", table, key)
			case got != value:
				t.Errorf("%s %q changed from %s to %s", table, key, value, got)
			}
		}
		for key, value := range after[table] {
			if _, ok := records[key]; !ok {
				t.Errorf("%s %q was added: %s", table, key, value)
			}
		}
	}
}

func TestInitCACertificate(t *testing.T) {
	clock := newTestClock()
	st := newStore(t, t.TempDir())
	a, err := ca.Init(st, "Example Org CA", ca.Config{Now: clock.Now})
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	cert := a.Certificate()

	if got := a.Name(); got != "Example Org CA" {
		t.Errorf("Name() = %q, want %q", got, "Example Org CA")
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || !cert.MaxPathLenZero {
		t.Errorf("CA certificate has IsCA %v, BasicConstraintsValid %v, MaxPathLenZero %v, want all true",
			cert.IsCA, cert.BasicConstraintsValid, cert.MaxPathLenZero)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA certificate lacks the certificate signing key usage")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("CA certificate is not self-signed: %v", err)
	}
	if want := clock.Now().Add(-time.Minute); !cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want %s", cert.NotBefore, want)
	}
	if want := clock.Now().Add(10 * 365 * 24 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", cert.NotAfter, want)
	}

	hostID, err := peer.IDFromPrivateKey(a.PeerKey())
	if err != nil {
		t.Fatal(err)
	}
	named, err := protocol.CertPeerID(cert)
	if err != nil {
		t.Fatalf("CertPeerID: %v", err)
	}
	if named != hostID {
		t.Errorf("CA certificate names peer %s, want the CA host %s", named, hostID)
	}
}

func TestInitRejectsInvalidName(t *testing.T) {
	tests := []struct {
		name   string
		caName string
	}{
		{"empty name", ""},
		{"leading space", " CA"},
		{"trailing newline", "CA\n"},
		{"control character", "C\x07A"},
		{"65 characters", strings.Repeat("x", 65)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t, t.TempDir())
			if _, err := ca.Init(st, tc.caName, ca.Config{}); err == nil {
				t.Fatalf("ca.Init accepted the name %q", tc.caName)
			}
			if _, err := ca.Load(st, ca.Config{}); !errors.Is(err, ca.ErrNotCA) {
				t.Errorf("ca.Load after a failed Init returned %v, want ErrNotCA", err)
			}
		})
	}
}

func TestInitTwiceFails(t *testing.T) {
	a, st, _ := newAuthority(t, ca.Config{})
	if _, err := ca.Init(st, "Second CA", ca.Config{}); err == nil {
		t.Fatal("a second ca.Init on the same store succeeded")
	}
	b, err := ca.Load(st, ca.Config{})
	if err != nil {
		t.Fatalf("ca.Load: %v", err)
	}
	if !bytes.Equal(b.Certificate().Raw, a.Certificate().Raw) {
		t.Error("a failed second Init replaced the CA certificate")
	}
}

func TestLoadReopensCA(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Create(dir, []byte(passphrase), cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Init(st, "Test CA", ca.Config{})
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = store.Open(dir, []byte(passphrase), nil)
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := ca.Load(st, ca.Config{})
	if err != nil {
		t.Fatalf("ca.Load: %v", err)
	}
	if !bytes.Equal(b.Certificate().Raw, a.Certificate().Raw) {
		t.Error("loaded CA certificate differs from the created one")
	}
	if !b.PeerKey().Equals(a.PeerKey()) {
		t.Error("loaded CA host key differs from the created one")
	}
	e := newEnrollee(t, "alice")
	cert, err := issue(t, b, e, newToken(t, b, "alice"))
	if err != nil {
		t.Fatalf("Issue after Load: %v", err)
	}
	if err := cert.CheckSignatureFrom(a.Certificate()); err != nil {
		t.Errorf("certificate from the loaded CA does not verify: %v", err)
	}
}

func TestLoadWithoutCA(t *testing.T) {
	st := newStore(t, t.TempDir())
	if _, err := ca.Load(st, ca.Config{}); !errors.Is(err, ca.ErrNotCA) {
		t.Errorf("ca.Load on an empty store returned %v, want ErrNotCA", err)
	}
}

func TestIssuedCertificateFields(t *testing.T) {
	const validity = 72 * time.Hour
	a, _, clock := newAuthority(t, ca.Config{Validity: validity})
	e := newEnrollee(t, "alice")
	cert, err := issue(t, a, e, newToken(t, a, "alice"))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	now := clock.Now()

	if cert.Subject.CommonName != "alice" {
		t.Errorf("CN = %q, want %q", cert.Subject.CommonName, "alice")
	}
	var uris []string
	for _, u := range cert.URIs {
		uris = append(uris, u.String())
	}
	want := []string{"skm:peer:" + e.peer.String(), "skm:key-version:1"}
	if strings.Join(uris, " ") != strings.Join(want, " ") {
		t.Errorf("URIs = %q, want %q", uris, want)
	}
	if len(cert.DNSNames)+len(cert.EmailAddresses)+len(cert.IPAddresses) > 0 {
		t.Errorf("certificate has DNS %q, email %q, IP %v names", cert.DNSNames, cert.EmailAddresses, cert.IPAddresses)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	if len(cert.ExtKeyUsage) != 2 || cert.ExtKeyUsage[0] != wantEKU[0] || cert.ExtKeyUsage[1] != wantEKU[1] {
		t.Errorf("ExtKeyUsage = %v, want client and server auth", cert.ExtKeyUsage)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %b, want digital signature only", cert.KeyUsage)
	}
	if cert.IsCA {
		t.Error("user certificate is a CA certificate")
	}
	if cert.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %s is not positive", cert.SerialNumber)
	}
	if bits := cert.SerialNumber.BitLen(); bits > 128 {
		t.Errorf("serial has %d bits, want at most 128", bits)
	}
	if want := now.Add(-time.Minute); !cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want %s", cert.NotBefore, want)
	}
	if want := now.Add(validity); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", cert.NotAfter, want)
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(e.key.Public()) {
		t.Error("certificate does not certify the CSR's key")
	}
	id, err := protocol.CertIdentity(cert)
	if err != nil {
		t.Fatalf("CertIdentity: %v", err)
	}
	if id != e.identity() {
		t.Errorf("certificate binds %+v, want %+v", id, e.identity())
	}

	roots := x509.NewCertPool()
	roots.AddCert(a.Certificate())
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Errorf("x509 verify under the CA certificate: %v", err)
	}
}

func TestIssueDefaultValidity(t *testing.T) {
	a, _, clock := newAuthority(t, ca.Config{})
	cert, err := issue(t, a, newEnrollee(t, "alice"), newToken(t, a, "alice"))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if want := clock.Now().Add(ca.DefaultValidity); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", cert.NotAfter, want)
	}
}

func writePEM(t *testing.T, path string, cert *x509.Certificate) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestIssuedCertificateOpenSSLVerify(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	// openssl checks validity at the real current time, which the test
	// clock starts at.
	a, _, _ := newAuthority(t, ca.Config{})
	cert, err := issue(t, a, newEnrollee(t, "alice"), newToken(t, a, "alice"))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	dir := t.TempDir()
	caPath, leafPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "leaf.pem")
	writePEM(t, caPath, a.Certificate())
	writePEM(t, leafPath, cert)

	for _, args := range [][]string{
		{"verify", "-CAfile", caPath, leafPath},
		{"verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", caPath, leafPath},
		{"verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", caPath, leafPath},
	} {
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), leafPath+": OK") {
			t.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestStatus(t *testing.T) {
	a, _, _ := newAuthority(t, ca.Config{})
	cert, err := issue(t, a, newEnrollee(t, "alice"), newToken(t, a, "alice"))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"second before NotBefore", cert.NotBefore.Add(-time.Second), ca.StatusNotYetValid},
		{"exactly NotBefore", cert.NotBefore, ca.StatusValid},
		{"middle of validity", cert.NotBefore.Add(time.Hour), ca.StatusValid},
		{"exactly NotAfter", cert.NotAfter, ca.StatusValid},
		{"second after NotAfter", cert.NotAfter.Add(time.Second), ca.StatusExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ca.Status(cert, tc.at); got != tc.want {
				t.Errorf("Status at %s = %q, want %q", tc.at, got, tc.want)
			}
		})
	}
}

func TestListReportsStatus(t *testing.T) {
	a, _, clock := newAuthority(t, ca.Config{Validity: time.Hour})
	alice := newEnrollee(t, "alice")
	first, err := issue(t, a, alice, newToken(t, a, "alice"))
	if err != nil {
		t.Fatalf("Issue to alice: %v", err)
	}
	clock.Advance(2 * time.Hour)
	bob := newEnrollee(t, "bob")
	second, err := issue(t, a, bob, newToken(t, a, "bob"))
	if err != nil {
		t.Fatalf("Issue to bob: %v", err)
	}

	list, err := a.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	want := []ca.IssuedCert{
		{Serial: ca.SerialString(first.SerialNumber), User: "alice", KeyVersion: 1, PeerID: alice.peer.String(),
			NotBefore: first.NotBefore, NotAfter: first.NotAfter, Status: ca.StatusExpired},
		{Serial: ca.SerialString(second.SerialNumber), User: "bob", KeyVersion: 1, PeerID: bob.peer.String(),
			NotBefore: second.NotBefore, NotAfter: second.NotAfter, Status: ca.StatusValid},
	}
	if len(list) != len(want) {
		t.Fatalf("List returned %d certificates, want %d: %+v", len(list), len(want), list)
	}
	for i := range want {
		got := list[i]
		if got.Serial != want[i].Serial || got.User != want[i].User || got.KeyVersion != want[i].KeyVersion ||
			got.PeerID != want[i].PeerID || !got.NotBefore.Equal(want[i].NotBefore) ||
			!got.NotAfter.Equal(want[i].NotAfter) || got.Status != want[i].Status {
			t.Errorf("List()[%d] = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestNewTokenLifetime(t *testing.T) {
	tests := []struct {
		name  string
		user  string
		ttl   time.Duration
		valid bool
	}{
		{"minimum lifetime", "alice", ca.MinTokenTTL, true},
		{"default lifetime", "alice", ca.DefaultTokenTTL, true},
		{"maximum lifetime", "alice", ca.MaxTokenTTL, true},
		{"second under minimum", "alice", ca.MinTokenTTL - time.Second, false},
		{"second over maximum", "alice", ca.MaxTokenTTL + time.Second, false},
		{"zero lifetime", "alice", 0, false},
		{"negative lifetime", "alice", -time.Hour, false},
		{"invalid user name", "Alice", time.Hour, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, st, clock := newAuthority(t, ca.Config{})
			before := takeSnapshot(t, st)
			tok, err := a.NewToken(tc.user, tc.ttl)
			if !tc.valid {
				if err == nil {
					t.Fatalf("NewToken(%q, %s) succeeded", tc.user, tc.ttl)
				}
				checkUnchanged(t, before, takeSnapshot(t, st))
				return
			}
			if err != nil {
				t.Fatalf("NewToken(%q, %s): %v", tc.user, tc.ttl, err)
			}
			if tok.User != tc.user {
				t.Errorf("token user = %q, want %q", tok.User, tc.user)
			}
			if want := clock.Now().Add(tc.ttl); !tok.Expires.Equal(want) {
				t.Errorf("token expires %s, want %s", tok.Expires, want)
			}
			if len(tok.Value) != 43 {
				t.Errorf("token has %d characters, want 43", len(tok.Value))
			}
		})
	}
}

func TestTokenNotStoredInClear(t *testing.T) {
	a, st, _ := newAuthority(t, ca.Config{})
	first, err := a.NewToken("alice", time.Hour)
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	second, err := a.NewToken("alice", time.Hour)
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	if first.Value == second.Value {
		t.Fatal("two tokens have the same value")
	}
	tokens := takeSnapshot(t, st)[store.Tokens]
	if len(tokens) != 2 {
		t.Fatalf("token table has %d records, want 2", len(tokens))
	}
	for key, value := range tokens {
		for _, tok := range []string{first.Value, second.Value} {
			if strings.Contains(key, tok) || strings.Contains(value, tok) {
				t.Errorf("token table record %q stores a token in clear", key)
			}
		}
	}
}

func TestTokenExpiryBoundary(t *testing.T) {
	tests := []struct {
		name     string
		advance  time.Duration
		wantCode protocol.Code
	}{
		{"used at exact expiry", ca.MinTokenTTL, ""},
		{"used second after expiry", ca.MinTokenTTL + time.Second, protocol.CodeTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _, clock := newAuthority(t, ca.Config{})
			tok, err := a.NewToken("alice", ca.MinTokenTTL)
			if err != nil {
				t.Fatalf("NewToken: %v", err)
			}
			clock.Advance(tc.advance)
			_, err = issue(t, a, newEnrollee(t, "alice"), tok.Value)
			checkCode(t, err, tc.wantCode)
		})
	}
}

// checkCode fails the test unless err is a rejection with code, or nil
// when code is empty.
func checkCode(t *testing.T, err error, code protocol.Code) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("request rejected: %v", err)
		}
		return
	}
	var rejected *protocol.Error
	if !errors.As(err, &rejected) {
		t.Fatalf("got %v, want a rejection with code %s", err, code)
	}
	if rejected.Code != code {
		t.Fatalf("rejection code %s (%s), want %s", rejected.Code, rejected.Message, code)
	}
}

func TestClientLocalAPI(t *testing.T) {
	a, _, _ := newAuthority(t, ca.Config{})
	path := filepath.Join(privateDir(t), localapi.SocketName)
	ln, err := localapi.Listen(path)
	if err != nil {
		t.Fatalf("localapi.Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- localapi.Serve(ctx, ln, ca.NewAPIHandler(a), slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("localapi.Serve: %v", err)
		}
	})

	c, err := ca.Dial(path)
	if err != nil {
		t.Fatalf("ca.Dial: %v", err)
	}
	if !bytes.Equal(c.Certificate().Raw, a.Certificate().Raw) {
		t.Error("client CA certificate differs from the CA's")
	}

	tok, err := c.NewToken("alice", time.Hour)
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	if tok.User != "alice" || tok.Value == "" {
		t.Errorf("NewToken returned %+v", tok)
	}
	if _, err := c.NewToken("alice", time.Second); err == nil || !strings.Contains(err.Error(), "invalid token lifetime") {
		t.Errorf("NewToken with a 1s lifetime returned %v, want an invalid lifetime error", err)
	}
	if _, err := c.NewToken("Alice", time.Hour); err == nil || !strings.Contains(err.Error(), "invalid user name") {
		t.Errorf("NewToken for %q returned %v, want an invalid user name error", "Alice", err)
	}

	list, err := c.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("List before any enrollment returned %+v", list)
	}
	e := newEnrollee(t, "alice")
	cert, err := issue(t, a, e, tok.Value)
	if err != nil {
		t.Fatalf("Issue with the token from the API: %v", err)
	}
	list, err = c.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 || list[0].Serial != ca.SerialString(cert.SerialNumber) ||
		list[0].User != "alice" || list[0].PeerID != e.peer.String() || list[0].Status != ca.StatusValid {
		t.Errorf("List returned %+v, want alice's certificate %s", list, ca.SerialString(cert.SerialNumber))
	}
}

func TestDialWithoutServer(t *testing.T) {
	path := filepath.Join(privateDir(t), localapi.SocketName)
	if _, err := ca.Dial(path); !errors.Is(err, localapi.ErrNotRunning) {
		t.Errorf("ca.Dial with no server returned %v, want ErrNotRunning", err)
	}
}

// mustParseURL is for building CSRs with hand-written URIs.
func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// privateDir returns a temporary directory of mode 0700, as the local API
// requires of the home it serves in.
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
