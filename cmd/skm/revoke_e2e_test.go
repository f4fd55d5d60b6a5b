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
	r = e.run("send", "alice", "let me in", "--home", homes["bob"])
	if r.code != 1 || !strings.Contains(r.stderr, "your own certificate revoked") {
		t.Errorf("send by revoked bob: exit %d\n%s", r.code, r.stderr)
	}
	// bob's daemon, restarted, still dials alice; she rejects him.
	nodes["bob"].cmd.Process.Signal(syscall.SIGTERM)
	nodes["bob"].cmd.Wait()
	nodes["bob"] = e.startNode(homes["bob"], "--peer", nodes["alice"].addrs[0])
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

func TestRotationKeepsMessages(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	homes := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		homes[u] = e.enroll(caHome, ca.addrs[0], u)
	}
	alice := e.startNode(homes["alice"])
	bob := e.startNode(homes["bob"], "--peer", alice.addrs[0])
	carol := e.startNode(homes["carol"], "--peer", alice.addrs[0])
	for _, d := range []*daemon{bob, carol} {
		waitFor(t, 20*time.Second, "a session with alice", func() bool {
			return strings.Contains(d.stderr.String(), "session established")
		})
	}
	aliceV1 := e.path("alice-v1.pem")
	writeFile(t, aliceV1, e.mustRun("cert", "--pem", "--home", homes["alice"]))

	// alice rotates while bob is offline.
	bob.cmd.Process.Signal(syscall.SIGTERM)
	bob.cmd.Wait()
	out := e.mustRun("rotate", "--home", homes["alice"])
	if !strings.Contains(out, "rotated to key version 2") {
		t.Fatalf("rotate printed %q", out)
	}
	// carol's session with alice drained, and her contact still holds
	// alice's superseded certificate: the send finds the new one.
	if _, state := e.sendID(homes["carol"], "alice", "right after the rotation", "15s"); state != "delivered" {
		t.Errorf("carol to alice right after the rotation: %s", state)
	}
	bob = e.startNode(homes["bob"], "--peer", alice.addrs[0])
	if _, state := e.sendID(homes["alice"], "bob", "after rotation, from alice", "15s"); state != "delivered" {
		t.Errorf("alice to bob after rotation: %s", state)
	}
	if _, state := e.sendID(homes["bob"], "alice", "after rotation, from bob", "15s"); state != "delivered" {
		t.Errorf("bob to alice after rotation: %s", state)
	}
	waitFor(t, 10*time.Second, "bob to see alice's version 1 superseded", func() bool {
		s, _ := e.status(homes["bob"], aliceV1)
		return s == "revoked (superseded)"
	})
	var peers []struct {
		User       string `json:"user"`
		KeyVersion int    `json:"key_version"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("peers", "--json", "--home", homes["bob"])), &peers); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.User == "alice" && p.KeyVersion != 2 {
			t.Errorf("bob's contact for alice has key version %d, want 2", p.KeyVersion)
		}
	}

	// alice rotates twice more while carol is offline, with messages
	// queued before, between and after.
	carol.cmd.Process.Signal(syscall.SIGTERM)
	carol.cmd.Wait()
	var want []string
	for i, step := range []string{"send", "rotate", "send", "rotate", "send"} {
		if step == "rotate" {
			e.mustRun("rotate", "--home", homes["alice"])
			continue
		}
		id, _ := e.sendID(homes["alice"], "carol", "while carol was away "+string(rune('a'+i)), "0s")
		want = append(want, id)
	}
	e.startNode(homes["carol"], "--peer", alice.addrs[0])
	fromAlice := func() []historyEntry {
		var out []historyEntry
		for _, m := range e.history(homes["carol"], "alice") {
			if m.From == "alice" {
				out = append(out, m)
			}
		}
		return out
	}
	waitFor(t, 30*time.Second, "carol to read every message", func() bool {
		return len(fromAlice()) == len(want)
	})
	for i, m := range fromAlice() {
		if m.ID != want[i] {
			t.Errorf("carol's message %d is %s, want %s", i, m.ID, want[i])
		}
	}
	who := e.mustRun("whoami", "--home", homes["alice"])
	if !strings.Contains(who, "key version:    4") {
		t.Errorf("alice's whoami after three rotations:\n%s", who)
	}
}

func TestSelfRevocation(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	bob := e.enroll(caHome, ca.addrs[0], "bob")
	aliceNode := e.startNode(alice)
	bobNode := e.startNode(bob, "--peer", aliceNode.addrs[0])
	waitFor(t, 20*time.Second, "bob's session with alice", func() bool {
		return strings.Contains(bobNode.stderr.String(), "session established")
	})

	out := e.mustRun("revoke", "--home", bob)
	if !strings.Contains(out, "certificate revoked (keyCompromise)") {
		t.Errorf("revoke printed %q", out)
	}
	waitFor(t, 10*time.Second, "alice to apply bob's self-revocation", func() bool {
		s, _ := e.status(alice, "bob")
		return s == "revoked (keyCompromise)"
	})
	if s, code := e.status(bob, "bob"); s != "revoked (keyCompromise)" || code != 1 {
		t.Errorf("bob's own status: %q, exit %d", s, code)
	}
	r := e.run("status", "bob", "--ca", "--json", "--home", alice)
	if r.code != 1 || !strings.Contains(r.stdout, `"source": "CA"`) || !strings.Contains(r.stdout, `"reason": "keyCompromise"`) {
		t.Errorf("status from the CA: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := e.run("status", "alice", "--ca", "--home", alice); r.code != 0 || !strings.Contains(r.stdout, ": valid") {
		t.Errorf("alice's status from the CA: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = e.run("rotate", "--home", bob)
	if r.code != 1 || !strings.Contains(r.stderr, "revoked") {
		t.Errorf("rotate after self-revocation: exit %d\n%s", r.code, r.stderr)
	}
	r = e.run("revoke", "--home", bob)
	if r.code != 1 || !strings.Contains(r.stderr, "already revoked") {
		t.Errorf("second self-revocation: exit %d\n%s", r.code, r.stderr)
	}

	// With a token from the CA operator, bob recovers with a fresh key,
	// and alice can write to him again.
	token := strings.TrimSpace(e.mustRun("ca", "token", "bob", "--home", caHome))
	if out := e.mustRun("rotate", "--token", token, "--home", bob); !strings.Contains(out, "rotated to key version 2") {
		t.Errorf("rotate --token printed %q", out)
	}
	if _, state := e.sendID(alice, "bob", "welcome back", "15s"); state != "delivered" {
		t.Errorf("alice to bob after his recovery: %s", state)
	}
}
