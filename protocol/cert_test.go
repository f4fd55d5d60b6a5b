package protocol_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/protocol"
)

// newPeerID returns the peer ID of a fresh libp2p Ed25519 key.
func newPeerID(t testing.TB) peer.ID {
	t.Helper()
	key, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newIdentity(t testing.TB, user string, version int) protocol.Identity {
	t.Helper()
	return protocol.Identity{User: user, KeyVersion: version, PeerID: newPeerID(t)}
}

// newCSR returns a DER CSR for id signed by a fresh Ed25519 key.
func newCSR(t testing.TB, id protocol.Identity) []byte {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: id.User}, URIs: id.URIs()}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// newCert returns a self-signed certificate that binds id to key.
func newCert(t testing.TB, id protocol.Identity, key crypto.Signer) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: id.User},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  id.URIs(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func newEd25519Cert(t testing.TB, id protocol.Identity) *x509.Certificate {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newCert(t, id, key)
}

func TestValidateUserName(t *testing.T) {
	tests := []struct {
		name  string
		input string
		valid bool
	}{
		{"plain lowercase name", "alice", true},
		{"single letter", "a", true},
		{"single digit", "7", true},
		{"leading digit", "0day", true},
		{"dot underscore and dash", "a.b_c-d", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"65 characters", strings.Repeat("a", 65), false},
		{"empty name", "", false},
		{"uppercase letter", "Alice", false},
		{"leading dot", ".alice", false},
		{"leading dash", "-alice", false},
		{"leading underscore", "_alice", false},
		{"inner space", "al ice", false},
		{"slash", "al/ice", false},
		{"colon", "al:ice", false},
		{"non-ASCII letter", "ålice", false},
		{"trailing newline", "alice\n", false},
		{"NUL byte", "alice\x00", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := protocol.ValidateUserName(tc.input)
			if tc.valid && err != nil {
				t.Errorf("ValidateUserName(%q): %v", tc.input, err)
			}
			if !tc.valid && err == nil {
				t.Errorf("ValidateUserName(%q) accepted an invalid name", tc.input)
			}
		})
	}
}

func mustParseURI(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parse URI %q: %v", s, err)
	}
	return u
}

func TestParseIdentity(t *testing.T) {
	p := newPeerID(t)
	other := newPeerID(t)
	peerURI := "skm:peer:" + p.String()
	version := func(v string) string { return "skm:key-version:" + v }
	maxVersion := strconv.Itoa(protocol.MaxKeyVersion)
	overMax := strconv.FormatInt(int64(protocol.MaxKeyVersion)+1, 10)

	tests := []struct {
		name    string
		user    string
		uris    []string
		want    int
		wantErr string
	}{
		{name: "valid identity", user: "alice", uris: []string{peerURI, version("1")}, want: 1},
		{name: "URIs in reverse order", user: "alice", uris: []string{version("7"), peerURI}, want: 7},
		{name: "unrelated URI ignored", user: "alice",
			uris: []string{"https://example.com/x", peerURI, version("2")}, want: 2},
		{name: "maximum key version", user: "alice", uris: []string{peerURI, version(maxVersion)},
			want: protocol.MaxKeyVersion},
		{name: "invalid user name", user: "Alice", uris: []string{peerURI, version("1")},
			wantErr: "invalid user name"},
		{name: "no URIs", user: "alice", wantErr: "missing skm:peer URI"},
		{name: "missing peer URI", user: "alice", uris: []string{version("1")},
			wantErr: "missing skm:peer URI"},
		{name: "missing version URI", user: "alice", uris: []string{peerURI},
			wantErr: "missing skm:key-version URI"},
		{name: "duplicate peer URI", user: "alice",
			uris:    []string{peerURI, "skm:peer:" + other.String(), version("1")},
			wantErr: "more than one skm:peer URI"},
		{name: "same peer URI twice", user: "alice", uris: []string{peerURI, peerURI, version("1")},
			wantErr: "more than one skm:peer URI"},
		{name: "duplicate version URI", user: "alice",
			uris: []string{peerURI, version("1"), version("2")}, wantErr: "more than one skm:key-version URI"},
		{name: "invalid peer ID", user: "alice", uris: []string{"skm:peer:notapeer", version("1")},
			wantErr: "invalid peer ID"},
		{name: "empty peer ID", user: "alice", uris: []string{"skm:peer:", version("1")},
			wantErr: "invalid peer ID"},
		{name: "peer URI with query", user: "alice", uris: []string{peerURI + "?x=1", version("1")},
			wantErr: "invalid peer ID"},
		{name: "key version zero", user: "alice", uris: []string{peerURI, version("0")},
			wantErr: "invalid key version"},
		{name: "negative key version", user: "alice", uris: []string{peerURI, version("-1")},
			wantErr: "invalid key version"},
		{name: "key version above max", user: "alice", uris: []string{peerURI, version(overMax)},
			wantErr: "invalid key version"},
		{name: "key version overflows int64", user: "alice",
			uris: []string{peerURI, version("99999999999999999999")}, wantErr: "invalid key version"},
		{name: "key version not a number", user: "alice", uris: []string{peerURI, version("one")},
			wantErr: "invalid key version"},
		{name: "empty key version", user: "alice", uris: []string{peerURI, version("")},
			wantErr: "invalid key version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var uris []*url.URL
			for _, s := range tc.uris {
				uris = append(uris, mustParseURI(t, s))
			}
			id, err := protocol.ParseIdentity(tc.user, uris)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseIdentity returned %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseIdentity: %v", err)
			}
			want := protocol.Identity{User: tc.user, KeyVersion: tc.want, PeerID: p}
			if id != want {
				t.Errorf("ParseIdentity returned %+v, want %+v", id, want)
			}
		})
	}
}

func TestIdentityURIsRoundTrip(t *testing.T) {
	id := newIdentity(t, "alice", 12)
	var reparsed []*url.URL
	for _, u := range id.URIs() {
		reparsed = append(reparsed, mustParseURI(t, u.String()))
	}
	got, err := protocol.ParseIdentity(id.User, reparsed)
	if err != nil {
		t.Fatalf("ParseIdentity: %v", err)
	}
	if got != id {
		t.Errorf("ParseIdentity returned %+v, want %+v", got, id)
	}
	if got, want := protocol.PeerURI(id.PeerID).String(), "skm:peer:"+id.PeerID.String(); got != want {
		t.Errorf("PeerURI = %q, want %q", got, want)
	}
}

func TestCertIdentity(t *testing.T) {
	id := newIdentity(t, "alice", 3)
	got, err := protocol.CertIdentity(newEd25519Cert(t, id))
	if err != nil {
		t.Fatalf("CertIdentity: %v", err)
	}
	if got != id {
		t.Errorf("CertIdentity returned %+v, want %+v", got, id)
	}

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = protocol.CertIdentity(newCert(t, id, ecKey))
	if err == nil || !strings.Contains(err.Error(), "want Ed25519") {
		t.Errorf("CertIdentity of an ECDSA certificate returned %v, want a key type error", err)
	}
}

func TestCertPeerID(t *testing.T) {
	id := newIdentity(t, "alice", 1)
	got, err := protocol.CertPeerID(newEd25519Cert(t, id))
	if err != nil {
		t.Fatalf("CertPeerID: %v", err)
	}
	if got != id.PeerID {
		t.Errorf("CertPeerID = %s, want %s", got, id.PeerID)
	}

	noURIs := newEd25519Cert(t, protocol.Identity{User: "alice"})
	noURIs.URIs = nil
	if _, err := protocol.CertPeerID(noURIs); err == nil {
		t.Error("CertPeerID accepted a certificate without an skm:peer URI")
	}
}

func TestFingerprintMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	cert := newEd25519Cert(t, newIdentity(t, "alice", 1))
	path := filepath.Join(t.TempDir(), "cert.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(path, block, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	// openssl prints "sha256 Fingerprint=AB:CD:...", with the digest name
	// in lowercase or uppercase depending on its version.
	_, want, ok := strings.Cut(strings.TrimSpace(string(out)), "Fingerprint=")
	if !ok {
		t.Fatalf("unexpected openssl output %q", out)
	}
	if got := protocol.Fingerprint(cert); got != want {
		t.Errorf("Fingerprint = %s, openssl prints %s", got, want)
	}
}

// FuzzParseIdentity checks that ParseIdentity never panics on URIs parsed
// from arbitrary strings, and that an identity it accepts is valid and
// survives encoding to URIs and parsing back.
func FuzzParseIdentity(f *testing.F) {
	id := newIdentity(f, "alice", 1)
	uris := id.URIs()
	f.Add(id.User, uris[0].String(), uris[1].String(), "")
	f.Add("bob", uris[1].String(), uris[0].String(), "https://example.com/")
	f.Add("bob", uris[0].String(), uris[0].String(), uris[1].String())
	f.Add("carol", uris[0].String(), "skm:key-version:2147483648", "")
	f.Add("carol", "skm:peer:x", "skm:key-version:0", "skm:key-version:+1")
	f.Add("Dave", "skm://peer/"+id.PeerID.String(), "skm:key-version:01", "%zz")

	f.Fuzz(func(t *testing.T, user, uri1, uri2, uri3 string) {
		var uris []*url.URL
		for _, s := range []string{uri1, uri2, uri3} {
			if u, err := url.Parse(s); err == nil {
				uris = append(uris, u)
			}
		}
		id, err := protocol.ParseIdentity(user, uris)
		if err != nil {
			return
		}
		if id.User != user {
			t.Fatalf("ParseIdentity returned user %q, want %q", id.User, user)
		}
		if err := protocol.ValidateUserName(id.User); err != nil {
			t.Fatalf("ParseIdentity accepted an invalid user name: %v", err)
		}
		if id.KeyVersion < 1 || id.KeyVersion > protocol.MaxKeyVersion {
			t.Fatalf("ParseIdentity accepted key version %d", id.KeyVersion)
		}
		if err := id.PeerID.Validate(); err != nil {
			t.Fatalf("ParseIdentity accepted an invalid peer ID: %v", err)
		}
		var reparsed []*url.URL
		for _, u := range id.URIs() {
			p, err := url.Parse(u.String())
			if err != nil {
				t.Fatalf("parse encoded URI %q: %v", u, err)
			}
			reparsed = append(reparsed, p)
		}
		again, err := protocol.ParseIdentity(id.User, reparsed)
		if err != nil {
			t.Fatalf("ParseIdentity rejected the URIs of %+v: %v", id, err)
		}
		if again != id {
			t.Fatalf("round trip returned %+v, want %+v", again, id)
		}
	})
}
