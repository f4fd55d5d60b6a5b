package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func (e *env) status(home, target string) (state string, code int) {
	e.t.Helper()
	r := e.run("status", target, "--json", "--home", home)
	var rep struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if r.code == 2 || json.Unmarshal([]byte(r.stdout), &rep) != nil {
		return "error: " + r.stderr, r.code
	}
	if rep.Reason != "" {
		return rep.Status + " (" + rep.Reason + ")", r.code
	}
	return rep.Status, r.code
}

func TestRevocationReachesEveryNode(t *testing.T) {
	openssl := requireOpenSSL(t)
	e := newEnv(t)
	caHome, ca := e.startCA()
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	homes := map[string]string{}
	for _, u := range users {
		homes[u] = e.enroll(caHome, ca.addrs[0], u)
	}
	nodes := map[string]*daemon{"alice": e.startNode(homes["alice"])}
	for _, u := range users[1:] {
		nodes[u] = e.startNode(homes[u], "--peer", nodes["alice"].addrs[0])
	}
	bobPEM := e.path("bob.pem")
	writeFile(t, bobPEM, e.mustRun("cert", "--pem", "--home", homes["bob"]))
	for _, u := range users {
		u := u
		waitFor(t, 20*time.Second, u+" to see bob's certificate valid", func() bool {
			s, _ := e.status(homes[u], bobPEM)
			return s == "valid"
		})
	}

	// erin is down while bob is revoked.
	nodes["erin"].cmd.Process.Signal(syscall.SIGTERM)
	nodes["erin"].cmd.Wait()

	out := e.mustRun("ca", "revoke", "bob", "--reason", "keyCompromise", "--home", caHome)
	if !strings.Contains(out, "revoked bob (keyCompromise)") {
		t.Errorf("ca revoke printed %q", out)
	}
	revokedAt := time.Now()
	for _, u := range []string{"alice", "carol", "dave"} {
		waitFor(t, 10*time.Second, u+" to apply bob's revocation", func() bool {
			s, code := e.status(homes[u], bobPEM)
			return s == "revoked (keyCompromise)" && code == 1
		})
		t.Logf("%s applied the revocation within %s", u, time.Since(revokedAt).Round(time.Millisecond))
	}

	// alice refuses to send to bob, and refuses bob's handshakes.
	r := e.run("send", "bob", "are you still there?", "--home", homes["alice"])
	if r.code != 1 || !strings.Contains(r.stderr, "certificate revoked") || !strings.Contains(r.stderr, "nothing was queued") {
		t.Errorf("send to revoked bob: exit %d\n%s", r.code, r.stderr)
	}
	e.run("send", "alice", "let me in", "--home", homes["bob"], "--wait", "3s")
	waitFor(t, 20*time.Second, "alice to reject bob's handshake", func() bool {
		log := nodes["alice"].stderr.String()
		return strings.Contains(log, "peer rejected") && strings.Contains(log, "certificate revoked")
	})

	// The CRL is standard: openssl verifies it and finds bob in it.
	caPEM, crlPEM := e.path("ca.pem"), e.path("crl.pem")
	writeFile(t, caPEM, e.mustRun("ca", "cert", "--pem", "--home", caHome))
	writeFile(t, crlPEM, e.mustRun("ca", "crl", "--pem", "--home", caHome))
	if out, err := exec.Command(openssl, "crl", "-in", crlPEM, "-CAfile", caPEM, "-verify", "-noout").CombinedOutput(); err != nil || !strings.Contains(string(out), "verify OK") {
		t.Errorf("openssl crl -verify: %v\n%s", err, out)
	}
	out2, _ := exec.Command(openssl, "verify", "-crl_check", "-CAfile", caPEM, "-CRLfile", crlPEM, bobPEM).CombinedOutput()
	if !strings.Contains(string(out2), "certificate revoked") {
		t.Errorf("openssl verify -crl_check on bob's certificate:\n%s", out2)
	}

	// With the CA stopped, erin comes back and learns of the revocation
	// from alice during their handshake.
	ca.cmd.Process.Signal(syscall.SIGTERM)
	ca.cmd.Wait()
	if s, _ := e.status(homes["erin"], bobPEM); s != "valid" {
		t.Fatalf("erin's status of bob before restart: %q, want valid", s)
	}
	nodes["erin"] = e.startNode(homes["erin"], "--peer", nodes["alice"].addrs[0])
	waitFor(t, 20*time.Second, "erin to learn of bob's revocation from a peer", func() bool {
		s, _ := e.status(homes["erin"], bobPEM)
		return s == "revoked (keyCompromise)"
	})
	if log := nodes["erin"].stderr.String(); !strings.Contains(log, "source=\"peer ") {
		t.Errorf("erin's log does not show the CRL coming from a peer:\n%s", log)
	}
}
