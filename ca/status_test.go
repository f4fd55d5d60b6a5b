package ca_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/skm-p2p/skm/ca"
)

func TestCheckClock(t *testing.T) {
	a, _, clock := newAuthority(t, ca.Config{Validity: 4 * time.Hour, CRLValidity: time.Hour})
	t0 := clock.Now()
	_, alice := issueTo(t, a, "alice")
	_, bob := issueTo(t, a, "bob")
	early, err := a.Revoke("bob", ca.ReasonKeyCompromise)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	// A CRL signed half an hour before alice's certificate expires, so
	// that it is fresh at her NotAfter.
	clock.Set(alice.NotAfter.Add(-30 * time.Minute))
	late := currentCRL(t, a)
	if late.Number.Cmp(early.Number) <= 0 {
		t.Fatalf("late CRL number %s does not follow %s", late.Number, early.Number)
	}

	stale := early.NextUpdate.Add(time.Second)
	tests := []struct {
		name string
		cert *x509.Certificate
		crl  *x509.RevocationList
		at   time.Time
		want string
	}{
		{"valid with fresh CRL", alice, early, t0, ca.StatusValid},
		{"valid at exactly NotBefore", alice, early, alice.NotBefore, ca.StatusValid},
		{"second before NotBefore", alice, early, alice.NotBefore.Add(-time.Second), ca.StatusNotYetValid},
		{"valid at exactly NotAfter", alice, late, alice.NotAfter, ca.StatusValid},
		{"second after NotAfter", alice, late, alice.NotAfter.Add(time.Second), ca.StatusExpired},
		{"CRL at exactly nextUpdate", alice, early, early.NextUpdate, ca.StatusValid},
		{"CRL second past nextUpdate", alice, early, stale, ca.StatusStale},
		{"no CRL at hand", alice, nil, t0, ca.StatusStale},
		{"expired with stale CRL", alice, early, alice.NotAfter.Add(time.Second), ca.StatusExpired},
		{"not yet valid without CRL", alice, nil, alice.NotBefore.Add(-time.Second), ca.StatusNotYetValid},
		{"revoked with fresh CRL", bob, early, t0, ca.StatusRevoked},
		{"revoked with stale CRL", bob, early, stale, ca.StatusRevoked},
		{"revoked after expiry", bob, late, bob.NotAfter.Add(time.Second), ca.StatusRevoked},
		{"revoked before NotBefore", bob, early, bob.NotBefore.Add(-time.Second), ca.StatusRevoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ca.Check(tc.cert, tc.crl, tc.at)
			if got.State != tc.want {
				t.Fatalf("Check at %s = %q, want %q", tc.at, got.State, tc.want)
			}
			if tc.want != ca.StatusRevoked {
				if got.Reason != "" || !got.RevokedAt.IsZero() {
					t.Errorf("Check reports reason %q at %s for an unrevoked certificate", got.Reason, got.RevokedAt)
				}
				return
			}
			if got.Reason != "keyCompromise" {
				t.Errorf("reason = %q, want keyCompromise", got.Reason)
			}
			if !got.RevokedAt.Equal(t0) {
				t.Errorf("revoked at %s, want %s", got.RevokedAt, t0)
			}
		})
	}
}

// TestStatusClockSkew checks a freshly issued certificate, whose NotBefore
// the CA backdates by one minute, against the clocks of nodes behind it.
func TestStatusClockSkew(t *testing.T) {
	a, _, clock := newAuthority(t, ca.Config{})
	caNow := clock.Now()
	_, cert := issueTo(t, a, "alice")
	crl := currentCRL(t, a)
	tests := []struct {
		name   string
		behind time.Duration
		want   string
	}{
		{"node in step", 0, ca.StatusValid},
		{"node 60 s behind", 60 * time.Second, ca.StatusValid},
		{"node 61 s behind", 61 * time.Second, ca.StatusNotYetValid},
		{"node 2 h behind", 2 * time.Hour, ca.StatusNotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := caNow.Add(-tc.behind)
			if got := ca.Status(cert, at); got != tc.want {
				t.Errorf("Status = %q, want %q", got, tc.want)
			}
			if got := ca.Check(cert, crl, at).State; got != tc.want {
				t.Errorf("Check = %q, want %q", got, tc.want)
			}
		})
	}
}
