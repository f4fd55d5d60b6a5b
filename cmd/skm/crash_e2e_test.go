package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Shape of TestCrashDurability. Each cycle sends 1 to maxSendsPerCycle
// messages and kills one daemon at a random moment within killWindow of
// the cycle's start. A share of killSendRate of the cycles also kill one
// "skm send" process within sendKillWindow of its start.
const (
	crashCycles      = 100
	maxSendsPerCycle = 4
	killWindow       = 400 * time.Millisecond
	killSendRate     = 0.3
	sendKillWindow   = 60 * time.Millisecond
	drainTimeout     = 90 * time.Second
)

// crashSeedEnv names the environment variable that replays a run of
// TestCrashDurability with the seed it logged.
const crashSeedEnv = "SKM_CRASH_SEED"

// crashSend is one "skm send" run of TestCrashDurability.
type crashSend struct {
	index int
	text  string
	// id is the message ID that send printed, or "" if it printed none
	// because it failed or was killed first.
	id string
	// cliKilled is set if the test killed this send process.
	cliKilled bool
	cycle     int
}

// crashPeer is a daemon that the test kills and restarts on a fixed
// loopback port, so that the other side's --peer address stays valid.
type crashPeer struct {
	home   string
	listen string
	extra  []string
	d      *daemon
	kills  int
}

func (p *crashPeer) start(e *env) {
	e.t.Helper()
	args := append([]string{"daemon", "--home", p.home, "--listen", p.listen}, p.extra...)
	p.d = e.start(1, args...)
}

// kill sends SIGKILL to the daemon and waits for it to exit.
func (p *crashPeer) kill() {
	p.d.cmd.Process.Kill()
	p.d.cmd.Wait()
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// crashSeed returns the seed from crashSeedEnv, or a fresh one.
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv(crashSeedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("invalid %s %q: %v", crashSeedEnv, s, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// sendKillable runs "skm send" from home with --wait 0s. If killAfter is
// positive, the process is killed with SIGKILL that long after it
// starts. It returns the ID that send printed, or "", the process's
// stderr, and whether the signal killed the process.
func (e *env) sendKillable(home, to, text string, killAfter time.Duration) (id, stderr string, killed bool) {
	e.t.Helper()
	cmd := exec.Command(skmBin, "send", to, text, "--home", home, "--wait", "0s")
	cmd.Env = e.vars
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start skm send: %v", err)
	}
	if killAfter > 0 {
		timer := time.AfterFunc(killAfter, func() { cmd.Process.Kill() })
		defer timer.Stop()
	}
	cmd.Wait()
	killed = !cmd.ProcessState.Exited()
	// A killed process may have printed its line before the signal. Only
	// a complete line counts: the ID is printed after the message is in
	// the store.
	line, complete := strings.CutSuffix(out.String(), "\n")
	if complete && (cmd.ProcessState.Success() || killed) {
		if f := strings.Fields(line); len(f) == 2 && (f[1] == "queued" || f[1] == "delivered") {
			id = f[0]
		}
	}
	return id, errb.String(), killed
}

// TestCrashDurability kills alice's and bob's daemons with SIGKILL, and
// some "skm send" processes, while alice sends to bob. Every message
// whose ID send printed must reach bob exactly once and in send order.
// A message whose send was killed before it printed an ID may be lost,
// but never duplicated. Set SKM_CRASH_SEED to replay a logged seed.
func TestCrashDurability(t *testing.T) {
	began := time.Now()
	seed := crashSeed(t)
	t.Logf("seed %d (replay with %s=%d)", seed, crashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	e := newEnv(t)
	caHome, ca := e.startCA()
	alice := &crashPeer{home: e.enroll(caHome, ca.addrs[0], "alice"),
		listen: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freeLoopbackPort(t))}
	bob := &crashPeer{home: e.enroll(caHome, ca.addrs[0], "bob"),
		listen: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freeLoopbackPort(t))}
	alice.start(e)
	bob.extra = []string{"--peer", alice.d.addrs[0]}
	bob.start(e)
	// From now on alice dials bob at start too, since bob's port is fixed.
	alice.extra = []string{"--peer", bob.d.addrs[0]}
	waitFor(t, 20*time.Second, "bob's session with alice", func() bool {
		return strings.Contains(bob.d.stderr.String(), "session established")
	})

	var sends []*crashSend
	failed := 0
	var sendTime, restartTime time.Duration
	cyclesBegan := time.Now()
	for cycle := range crashCycles {
		victim := alice
		if rng.IntN(2) == 1 {
			victim = bob
		}
		// The kill runs on a timer so that it lands at any point of the
		// cycle's sends, including inside one.
		var killMu sync.Mutex
		var killedAt time.Time
		killer := time.AfterFunc(time.Duration(rng.Int64N(int64(killWindow))), func() {
			killMu.Lock()
			defer killMu.Unlock()
			victim.d.cmd.Process.Kill()
			killedAt = time.Now()
		})
		killSend := -1
		n := 1 + rng.IntN(maxSendsPerCycle)
		if rng.Float64() < killSendRate {
			killSend = rng.IntN(n)
		}
		for i := range n {
			s := &crashSend{index: len(sends), cycle: cycle}
			s.text = fmt.Sprintf("crash test message %d", s.index)
			var killAfter time.Duration
			if i == killSend {
				killAfter = 1 + time.Duration(rng.Int64N(int64(sendKillWindow)))
			}
			var stderr string
			sendStart := time.Now()
			s.id, stderr, s.cliKilled = e.sendKillable(alice.home, "bob", s.text, killAfter)
			sendTime += time.Since(sendStart)
			sends = append(sends, s)
			if s.id != "" || s.cliKilled {
				continue
			}
			// A send may fail only when alice's daemon died under it.
			killMu.Lock()
			excused := victim == alice && !killedAt.IsZero()
			killMu.Unlock()
			if !excused {
				t.Fatalf("cycle %d: send of message %d failed with no daemon killed under it:\n%s", cycle, s.index, stderr)
			}
			failed++
		}
		// If the timer has not fired, the kill comes now, right after the
		// last send. Wait returns once the process is gone either way.
		if killer.Stop() {
			victim.d.cmd.Process.Kill()
		}
		victim.d.cmd.Wait()
		victim.kills++
		// The store must open after every crash with no manual step:
		// start fails the test unless the daemon prints its address.
		restartStart := time.Now()
		victim.start(e)
		restartTime += time.Since(restartStart)
	}
	cyclesTook := time.Since(cyclesBegan)
	drainBegan := time.Now()

	waitFor(t, drainTimeout, "alice's outbox to drain", func() bool {
		for _, m := range e.history(alice.home, "bob") {
			if m.State != "delivered" {
				return false
			}
		}
		return true
	})
	drainTook := time.Since(drainBegan)

	// Both daemons crash once more, and history is read from the stores
	// directly: a half-written record would fail to parse.
	viaDaemon := map[string][]historyEntry{
		"alice": e.history(alice.home, "bob"),
		"bob":   e.history(bob.home, "alice"),
	}
	alice.kill()
	bob.kill()
	aliceHist := e.history(alice.home, "bob")
	bobHist := e.history(bob.home, "alice")
	if !slices.Equal(aliceHist, viaDaemon["alice"]) {
		t.Errorf("alice's history differs after a crash: %d entries before, %d after", len(viaDaemon["alice"]), len(aliceHist))
	}
	if !slices.Equal(bobHist, viaDaemon["bob"]) {
		t.Errorf("bob's history differs after a crash: %d entries before, %d after", len(viaDaemon["bob"]), len(bobHist))
	}

	lost, duplicated, unprintedArrived := checkCrashHistory(t, sends, aliceHist, bobHist)
	printed, cliKills := 0, 0
	for _, s := range sends {
		if s.id != "" {
			printed++
		}
		if s.cliKilled {
			cliKills++
		}
	}
	t.Logf("cycles %d: alice killed %d times, bob %d times; %d sends, %d printed an ID, "+
		"%d send processes killed, %d sends failed under a killed daemon",
		crashCycles, alice.kills, bob.kills, len(sends), printed, cliKills, failed)
	t.Logf("bob received %d messages: lost %d, duplicated %d; %d of %d sends without an ID arrived",
		len(bobHist), lost, duplicated, unprintedArrived, len(sends)-printed)
	t.Logf("runtime: cycles %s (sends %s, daemon restarts %s), outbox drain %s, total %s",
		cyclesTook.Round(time.Millisecond), sendTime.Round(time.Millisecond), restartTime.Round(time.Millisecond),
		drainTook.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// checkCrashHistory checks both histories against the sends and returns
// the number of printed IDs missing at bob, the number of duplicate
// entries at bob, and how many sends that printed no ID arrived anyway.
func checkCrashHistory(t *testing.T, sends []*crashSend, aliceHist, bobHist []historyEntry) (lost, duplicated, unprintedArrived int) {
	t.Helper()
	byText := map[string]*crashSend{}
	for _, s := range sends {
		byText[s.text] = s
	}

	// bob's history: only alice's texts, each at most once, in send
	// order, with the ID that send printed.
	seenIDs := map[string]bool{}
	seenTexts := map[string]bool{}
	last := -1
	for i, m := range bobHist {
		s := byText[m.Text]
		switch {
		case s == nil:
			t.Errorf("bob's entry %d has a text alice never sent: %+v", i, m)
			continue
		case m.From != "alice" || m.State != "received":
			t.Errorf("bob's entry %d is %+v, want a message received from alice", i, m)
		}
		if seenIDs[m.ID] || seenTexts[m.Text] {
			t.Errorf("bob's entry %d duplicates message %d (%s)", i, s.index, m.ID)
			duplicated++
			continue
		}
		seenIDs[m.ID], seenTexts[m.Text] = true, true
		if s.id != "" && m.ID != s.id {
			t.Errorf("bob's entry %d has ID %s, but send printed %s for %q", i, m.ID, s.id, m.Text)
		}
		if s.id == "" {
			unprintedArrived++
		}
		if s.index <= last {
			t.Errorf("bob's entry %d is message %d, after message %d: out of send order", i, s.index, last)
		}
		last = s.index
	}
	for _, s := range sends {
		if s.id != "" && !seenIDs[s.id] {
			t.Errorf("message %d (%s, cycle %d) was printed by send but never reached bob", s.index, s.id, s.cycle)
			lost++
		}
	}

	// alice's history: every printed ID once, delivered, in send order.
	var aliceIDs []string
	for _, m := range aliceHist {
		if m.State != "delivered" {
			t.Errorf("alice's message %s (%q) is %s, want delivered", m.ID, m.Text, m.State)
		}
		aliceIDs = append(aliceIDs, m.ID)
	}
	var printedIDs []string
	for _, s := range sends {
		if s.id != "" {
			printedIDs = append(printedIDs, s.id)
		}
	}
	alicePrinted := slices.DeleteFunc(slices.Clone(aliceIDs), func(id string) bool { return !slices.Contains(printedIDs, id) })
	if !slices.Equal(alicePrinted, printedIDs) {
		t.Errorf("alice's history contains %d entries with printed IDs, want the %d printed IDs once each, in send order",
			len(alicePrinted), len(printedIDs))
	}
	return lost, duplicated, unprintedArrived
}
