package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jsPeerDir is the js-libp2p peer's package, relative to this package.
const jsPeerDir = "../../interop/js"

// jsPeerTimeout is how long the JS peer waits for a GossipSub message
// before it gives up, in seconds.
const jsPeerTimeout = "25"

// jsEvent is one JSON line that interop/js/peer.mjs prints on stdout.
type jsEvent struct {
	Event        string   `json:"event"`
	AgentVersion string   `json:"agentVersion"`
	Protocols    []string `json:"protocols"`
	RTTMs        float64  `json:"rttMs"`
	Topic        string   `json:"topic"`
	From         string   `json:"from"`
	Data         string   `json:"data"`
	SHA256       string   `json:"sha256"`
}

// jsPeer is a running interop/js/peer.mjs process.
type jsPeer struct {
	t      *testing.T
	events chan jsEvent
	stderr *lockedBuffer
	exited chan error
}

// requireJSPeer returns the path of node, and fails the test unless node
// and the JS peer's packages are installed. Outside CI a machine without
// node skips the test instead.
func requireJSPeer(t *testing.T) string {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("node is not installed; run 'make interop-deps' after installing Node.js 20")
		}
		t.Fatal("node is not installed; .ci/run installs it, then run 'make interop-deps'")
	}
	if _, err := os.Stat(filepath.Join(jsPeerDir, "node_modules")); err != nil {
		t.Fatalf("the js-libp2p peer's packages are missing; run 'make interop-deps': %v", err)
	}
	return nodeBin
}

// startJSPeer runs the JS peer against the daemon at addr, subscribed to
// topic. The process is killed at cleanup if it still runs.
func startJSPeer(t *testing.T, nodeBin, addr, topic string) *jsPeer {
	t.Helper()
	cmd := exec.Command(nodeBin, filepath.Join(jsPeerDir, "peer.mjs"), addr, topic, jsPeerTimeout)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &jsPeer{t: t, events: make(chan jsEvent, 8), stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the JS peer: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev jsEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = jsEvent{Event: "invalid line: " + sc.Text()}
			}
			p.events <- ev
		}
		close(p.events)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		for range p.events {
		}
	})
	return p
}

// next waits up to limit for the JS peer's next line and fails the test
// unless it is an event of type want.
func (p *jsPeer) next(want string, limit time.Duration) jsEvent {
	p.t.Helper()
	select {
	case ev, ok := <-p.events:
		if !ok {
			p.t.Fatalf("the JS peer exited before its %s line: %v\nstderr:\n%s", want, <-p.exited, p.stderr)
		}
		if ev.Event != want {
			p.t.Fatalf("the JS peer printed a %q line, want %q\nstderr:\n%s", ev.Event, want, p.stderr)
		}
		return ev
	case <-time.After(limit):
		p.t.Fatalf("the JS peer printed no %s line in %s\nstderr:\n%s", want, limit, p.stderr)
	}
	return jsEvent{}
}

// revocationTopicOf returns the revocation topic name of the CA whose
// certificate is caPEM, as docs/protocol.md defines it.
func revocationTopicOf(t *testing.T, caPEM string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(caPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("ca cert --pem printed no certificate:\n%s", caPEM)
	}
	sum := sha256.Sum256(block.Bytes)
	return "skm/revocations/" + hex.EncodeToString(sum[:])
}

func TestInteropJSLibp2p(t *testing.T) {
	nodeBin := requireJSPeer(t)
	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	e.enroll(caHome, ca.addrs[0], "bob")
	aliceNode := e.startNode(alice)
	topic := revocationTopicOf(t, e.mustRun("ca", "cert", "--pem", "--home", caHome))

	js := startJSPeer(t, nodeBin, aliceNode.addrs[0], topic)
	id := js.next("identify", 20*time.Second)
	t.Logf("agent version %q, protocols %v", id.AgentVersion, id.Protocols)
	if !strings.HasPrefix(id.AgentVersion, "skm/") {
		t.Errorf("agent version %q does not start with skm/", id.AgentVersion)
	}
	wantProtocols := []struct {
		name, id string
	}{
		{"skm session protocol", "/skm/session/1.0.0"},
		{"libp2p identify protocol", "/ipfs/id/1.0.0"},
		{"libp2p ping protocol", "/ipfs/ping/1.0.0"},
		{"gossipsub v1.1 protocol", "/meshsub/1.1.0"},
	}
	for _, tc := range wantProtocols {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Contains(id.Protocols, tc.id) {
				t.Errorf("identify lists no %s", tc.id)
			}
		})
	}

	ping := js.next("ping", 10*time.Second)
	t.Logf("ping RTT %g ms", ping.RTTMs)
	if ping.RTTMs < 0 {
		t.Errorf("ping RTT %g ms is negative", ping.RTTMs)
	}

	// Once the daemon is in the JS peer's mesh, a GRAFT has gone between
	// them, so the daemon forwards the CA's CRL to the JS peer in full
	// instead of only announcing it by gossip.
	js.next("mesh", 10*time.Second)
	out := e.mustRun("ca", "revoke", "bob", "--reason", "keyCompromise", "--home", caHome)
	if !strings.Contains(out, "revoked bob (keyCompromise)") {
		t.Errorf("ca revoke printed %q", out)
	}
	msg := js.next("message", 20*time.Second)

	block, _ := pem.Decode([]byte(e.mustRun("ca", "crl", "--pem", "--home", caHome)))
	if block == nil || block.Type != "X509 CRL" {
		t.Fatal("ca crl --pem printed no CRL")
	}
	got, err := hex.DecodeString(msg.Data)
	if err != nil {
		t.Fatalf("message data is not hex: %v", err)
	}
	if !bytes.Equal(got, block.Bytes) {
		t.Errorf("the JS peer received %d bytes that differ from the CA's %d-byte CRL", len(got), len(block.Bytes))
	}
	sum := sha256.Sum256(block.Bytes)
	if msg.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("message SHA-256 %s, want the CRL's %x", msg.SHA256, sum)
	}
	if msg.Topic != topic {
		t.Errorf("message topic %q, want %q", msg.Topic, topic)
	}
	if caID := peerIDOf(t, ca.addrs[0]); msg.From != caID {
		t.Errorf("message author %s, want the CA %s", msg.From, caID)
	}

	select {
	case err := <-js.exited:
		if err != nil {
			t.Errorf("the JS peer exited with %v after the message\nstderr:\n%s", err, js.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the JS peer still runs 10s after the message")
	}
}
