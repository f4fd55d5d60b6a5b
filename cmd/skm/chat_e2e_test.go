package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// historyEntry is one message of "skm history --json".
type historyEntry struct {
	ID    string `json:"id"`
	From  string `json:"from"`
	To    string `json:"to"`
	Text  string `json:"text"`
	State string `json:"state"`
}

// enroll creates and enrolls a node home for user and returns its path.
func (e *env) enroll(caHome, caAddr, user string) string {
	e.t.Helper()
	home := e.path(user)
	token := strings.TrimSpace(e.mustRun("ca", "token", user, "--home", caHome))
	e.mustRun("init", "--user", user, "--home", home, "--ca", caAddr, "--token", token)
	return home
}

// startNode runs "skm daemon" for home on a loopback port.
func (e *env) startNode(home string, extra ...string) *daemon {
	e.t.Helper()
	args := append([]string{"daemon", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0"}, extra...)
	return e.start(1, args...)
}

func (e *env) history(home, peer string) []historyEntry {
	e.t.Helper()
	var h []historyEntry
	out := e.mustRun("history", peer, "--json", "--home", home)
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		e.t.Fatalf("history --json: %v\n%s", err, out)
	}
	return h
}

// waitFor polls cond every 100 ms for up to limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendID runs "skm send" and returns the message ID and state it printed.
func (e *env) sendID(home, to, text string, wait string) (id, state string) {
	e.t.Helper()
	out := strings.Fields(e.mustRun("send", to, text, "--home", home, "--wait", wait))
	if len(out) != 2 {
		e.t.Fatalf("send printed %q, want an ID and a state", out)
	}
	return out[0], out[1]
}

func TestChatHundredMessages(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	bob := e.enroll(caHome, ca.addrs[0], "bob")
	aliceNode := e.startNode(alice)
	bobNode := e.startNode(bob, "--peer", aliceNode.addrs[0])
	waitFor(t, 20*time.Second, "bob's session with alice", func() bool {
		return strings.Contains(bobNode.stderr.String(), "session established")
	})

	const n = 100
	var want []string
	for i := range n {
		id, state := e.sendID(alice, "bob", fmt.Sprintf("ping %d from alice", i), "10s")
		if state != "delivered" {
			t.Fatalf("message %d: state %q, want delivered", i, state)
		}
		want = append(want, id)
		if i%10 == 9 {
			id, state = e.sendID(bob, "alice", fmt.Sprintf("pong %d from bob", i), "10s")
			if state != "delivered" {
				t.Fatalf("reply %d: state %q, want delivered", i, state)
			}
			want = append(want, id)
		}
	}

	aliceHist := e.history(alice, "bob")
	bobHist := e.history(bob, "alice")
	if len(aliceHist) != len(want) || len(bobHist) != len(want) {
		t.Fatalf("history lengths: alice %d, bob %d, want %d", len(aliceHist), len(bobHist), len(want))
	}
	for i := range want {
		a, b := aliceHist[i], bobHist[i]
		if a.ID != want[i] || b.ID != want[i] {
			t.Fatalf("entry %d: alice has %s, bob has %s, want %s", i, a.ID, b.ID, want[i])
		}
		if a.Text != b.Text || a.From != b.From {
			t.Errorf("entry %d differs: alice %+v, bob %+v", i, a, b)
		}
	}
	for _, log := range []string{aliceNode.stderr.String(), bobNode.stderr.String()} {
		if strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") {
			t.Errorf("daemon logged a warning or error:\n%s", log)
		}
	}
}

func TestChatSurvivesKilledReceiver(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	bob := e.enroll(caHome, ca.addrs[0], "bob")
	aliceNode := e.startNode(alice)
	bobNode := e.startNode(bob, "--peer", aliceNode.addrs[0])
	waitFor(t, 20*time.Second, "bob's session with alice", func() bool {
		return strings.Contains(bobNode.stderr.String(), "session established")
	})

	// alice sends without waiting, so messages are in flight when bob
	// is killed. Every ID that send printed is acknowledged or queued.
	const n = 60
	var sent []string
	for i := range n {
		if i == 20 {
			bobNode.cmd.Process.Signal(syscall.SIGKILL)
			bobNode.cmd.Wait()
		}
		id, _ := e.sendID(alice, "bob", fmt.Sprintf("message %d", i), "0s")
		sent = append(sent, id)
	}

	// bob comes back on a new port and dials alice; alice's outbox
	// drains over that session.
	bobNode = e.startNode(bob, "--peer", aliceNode.addrs[0])
	waitFor(t, 60*time.Second, "alice's outbox to drain", func() bool {
		for _, m := range e.history(alice, "bob") {
			if m.State != "delivered" {
				return false
			}
		}
		return true
	})

	got := e.history(bob, "alice")
	if len(got) != n {
		t.Fatalf("bob has %d messages, want %d exactly once", len(got), n)
	}
	for i, m := range got {
		if m.ID != sent[i] {
			t.Fatalf("bob's message %d is %s (%q), want %s: order or duplicate fault", i, m.ID, m.Text, sent[i])
		}
	}
}

func TestChatCommandBothWays(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	bob := e.enroll(caHome, ca.addrs[0], "bob")
	aliceNode := e.startNode(alice)
	bobNode := e.startNode(bob, "--peer", aliceNode.addrs[0])
	waitFor(t, 20*time.Second, "bob's session with alice", func() bool {
		return strings.Contains(bobNode.stderr.String(), "session established")
	})

	// alice chats through her daemon; her typed lines reach bob, and
	// bob's message appears on her screen with time and sender.
	cmd := exec.Command(skmBin, "chat", "bob", "--home", alice)
	cmd.Env = e.vars
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	screen := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = screen, screen
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 10*time.Second, "the chat banner", func() bool {
		return strings.Contains(screen.String(), "chatting with bob as alice")
	})
	fmt.Fprintln(stdin, "hello from the chat prompt")
	waitFor(t, 10*time.Second, "bob to receive the chat line", func() bool {
		h := e.history(bob, "alice")
		return len(h) == 1 && h[0].Text == "hello from the chat prompt"
	})
	e.sendID(bob, "alice", "reply with \x1b[31mescape\x1b[0m codes", "10s")
	waitFor(t, 10*time.Second, "bob's reply on alice's screen", func() bool {
		return strings.Contains(screen.String(), "bob: reply with \uFFFD[31mescape\uFFFD[0m codes")
	})
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("chat exited with %v after end of input\n%s", err, screen)
	}
}

func TestCommandsSameWithoutDaemon(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	bob := e.enroll(caHome, ca.addrs[0], "bob")
	aliceNode := e.startNode(alice)
	bobNode := e.startNode(bob, "--peer", aliceNode.addrs[0])
	waitFor(t, 20*time.Second, "bob's session with alice", func() bool {
		return strings.Contains(bobNode.stderr.String(), "session established")
	})
	e.sendID(alice, "bob", "first", "10s")
	e.sendID(bob, "alice", "second", "10s")

	commands := [][]string{
		{"history", "bob", "--json"},
		{"history", "bob"},
		{"cert", "--json"},
		{"cert", "--pem"},
	}
	running := map[string]string{}
	for _, args := range commands {
		running[strings.Join(args, " ")] = e.mustRun(append(args, "--home", alice)...)
	}
	aliceNode.cmd.Process.Signal(syscall.SIGTERM)
	aliceNode.cmd.Wait()
	for _, args := range commands {
		key := strings.Join(args, " ")
		if got := e.mustRun(append(args, "--home", alice)...); got != running[key] {
			t.Errorf("skm %s differs without the daemon:\nwith:\n%s\nwithout:\n%s", key, running[key], got)
		}
	}

	// With no daemon, send queues; the message goes out once alice's
	// daemon runs again.
	id, state := e.sendID(alice, "bob", "sent while alice's daemon was down", "0s")
	if state != "queued" {
		t.Fatalf("send without daemon and no wait: state %q, want queued", state)
	}
	e.startNode(alice)
	waitFor(t, 30*time.Second, "the queued message to reach bob", func() bool {
		h := e.history(bob, "alice")
		return len(h) == 3 && h[2].ID == id
	})
}

func TestSendFindsUserThroughDirectory(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	carol := e.enroll(caHome, ca.addrs[1], "carol")
	e.startNode(alice)
	carolNode := e.startNode(carol)

	// Neither node knows the other: alice learns carol's certificate
	// and announced address from the CA directory.
	r := e.run("peers", "--json", "--home", alice)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("alice has contacts before the test: %s %s", r.stdout, r.stderr)
	}
	var sent result
	waitFor(t, 20*time.Second, "carol's announcement to reach the CA", func() bool {
		sent = e.run("send", "carol", "found you through the CA", "--home", alice, "--wait", "10s")
		return sent.code == 0
	})
	if !strings.HasSuffix(strings.TrimSpace(sent.stdout), " delivered") {
		t.Fatalf("send through the directory: %s%s", sent.stdout, sent.stderr)
	}
	h := e.history(carol, "alice")
	if len(h) == 0 || h[0].Text != "found you through the CA" {
		t.Fatalf("carol's history: %+v", h)
	}
	if !strings.Contains(carolNode.stderr.String(), "session established") {
		t.Errorf("carol logged no session:\n%s", carolNode.stderr)
	}

	r = e.run("send", "nobody", "hi", "--home", alice)
	if r.code != 1 || !strings.Contains(r.stderr, `unknown user "nobody"`) {
		t.Errorf("send to an unknown user: exit %d\n%s", r.code, r.stderr)
	}
}
