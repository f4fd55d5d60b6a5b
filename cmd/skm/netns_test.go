package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests in this file run skm processes on a LAN made of Linux network
// namespaces, so that mDNS multicast stays inside namespaces the test
// creates. Each host namespace has one veth pair whose other end is a
// port of a bridge in a "switch" namespace. Nothing is created in the
// machine's own namespace, and no packet leaves the namespaces.

// lanSubnet is the first three octets of the hosts' addresses: host n
// has lanSubnet.n/24 on its veth end.
const lanSubnet = "10.213.0"

// netnsName matches the namespaces this file creates: the run's prefix,
// the test process's PID and the host's role.
var netnsName = regexp.MustCompile(`^(skm[0-9a-f]{4})-([0-9]+)-[a-z0-9]+$`)

// lan is one test's network: a switch namespace with a bridge, and the
// host namespaces plugged into it. Its namespaces are deleted at cleanup.
type lan struct {
	t          *testing.T
	ip         string // path of the ip command
	prefix     string // "skm" and 4 random hex digits, on every name
	sw         string // the switch namespace
	bridge     string
	namespaces []string // created, in order
}

// nsHost is a host namespace on a lan, running skm processes as e.
type nsHost struct {
	lan  *lan
	e    *env
	ns   string
	addr string // the IPv4 address on the veth end
	port string // the bridge end of the host's veth pair, in lan.sw
}

// requireNetns skips the test unless it can create network namespaces:
// it needs root and iproute2's ip command. It returns the path of ip.
func requireNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("network namespace tests need the ip command of iproute2")
	}
	return ip
}

// newLAN creates an empty switch: a bridge in a new namespace.
func newLAN(t *testing.T) *lan {
	t.Helper()
	ip := requireNetns(t)
	removeDeadRuns(t, ip)
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	l := &lan{t: t, ip: ip, prefix: "skm" + hex.EncodeToString(b[:])}
	l.bridge = l.prefix + "br"
	t.Cleanup(l.remove)
	l.sw = l.addNamespace("sw")
	l.mustIP("-n", l.sw, "link", "add", l.bridge, "type", "bridge")
	l.mustIP("-n", l.sw, "link", "set", l.bridge, "up")
	return l
}

// removeDeadRuns deletes the namespaces of earlier runs whose process no
// longer exists, such as a test binary killed by a timeout before its
// cleanup ran. scripts/demo-lan.sh names its namespaces the same way.
// Namespaces of runs still going are left alone.
func removeDeadRuns(t *testing.T, ip string) {
	t.Helper()
	out, err := exec.Command(ip, "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		m := netnsName.FindStringSubmatch(fields[0])
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[2])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if out, err := exec.Command(ip, "netns", "del", fields[0]).CombinedOutput(); err != nil {
			t.Logf("remove namespace %s of a dead run: %v %s", fields[0], err, out)
		} else {
			t.Logf("removed namespace %s of a dead run", fields[0])
		}
	}
}

// mustIP runs the ip command with args and fails the test on an error.
func (l *lan) mustIP(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(l.ip, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// addNamespace creates the namespace for role and returns its name.
func (l *lan) addNamespace(role string) string {
	l.t.Helper()
	name := fmt.Sprintf("%s-%d-%s", l.prefix, os.Getpid(), role)
	l.mustIP("netns", "add", name)
	l.namespaces = append(l.namespaces, name)
	l.mustIP("-n", name, "link", "set", "lo", "up")
	return name
}

// remove deletes every namespace of the lan. Deleting a namespace
// destroys its interfaces, and a veth pair goes with either end.
func (l *lan) remove() {
	for i := len(l.namespaces) - 1; i >= 0; i-- {
		if out, err := exec.Command(l.ip, "netns", "del", l.namespaces[i]).CombinedOutput(); err != nil {
			l.t.Errorf("remove namespace %s: %v %s", l.namespaces[i], err, out)
		}
	}
	out, err := exec.Command(l.ip, "netns", "list").Output()
	if err != nil {
		l.t.Errorf("ip netns list: %v", err)
	}
	if strings.Contains(string(out), l.prefix+"-") {
		l.t.Errorf("namespaces of this run remain after cleanup:\n%s", out)
	}
}

// addHost creates host n, with address lanSubnet.n/24, and plugs it into
// the bridge. With dummyFirst the host's first interface after lo is a
// dummy interface with multicast on and an address in another subnet, as
// a docker0 bridge or an unplugged adapter can be on a real machine.
func (l *lan) addHost(e *env, role string, n int, dummyFirst bool) *nsHost {
	l.t.Helper()
	h := &nsHost{lan: l, e: e, ns: l.addNamespace(role),
		addr: fmt.Sprintf("%s.%d", lanSubnet, n), port: fmt.Sprintf("%ss%d", l.prefix, n)}
	if dummyFirst {
		l.addDummy(h.ns, fmt.Sprintf("%sd%d", l.prefix, n), fmt.Sprintf("10.213.1.%d/24", n))
	}
	dev := fmt.Sprintf("%sh%d", l.prefix, n)
	l.mustIP("-n", h.ns, "link", "add", dev, "type", "veth", "peer", "name", h.port, "netns", l.sw)
	l.mustIP("-n", h.ns, "addr", "add", h.addr+"/24", "dev", dev)
	l.mustIP("-n", h.ns, "link", "set", dev, "up")
	l.mustIP("-n", l.sw, "link", "set", h.port, "master", l.bridge)
	l.mustIP("-n", l.sw, "link", "set", h.port, "up")
	return h
}

// addDummy adds interface name with address addr to namespace ns: up,
// with multicast on, and leading nowhere. It is a dummy interface if the
// kernel has them, else a bridge without ports, which is what docker0
// is on a machine running no container.
func (l *lan) addDummy(ns, name, addr string) {
	l.t.Helper()
	out, err := exec.Command(l.ip, "-n", ns, "link", "add", name, "type", "dummy").CombinedOutput()
	if err != nil && strings.Contains(string(out), "Unknown device type") {
		l.t.Logf("this kernel has no dummy interfaces: %s is a bridge without ports", name)
		l.mustIP("-n", ns, "link", "add", name, "type", "bridge")
	} else if err != nil {
		l.t.Fatalf("ip -n %s link add %s type dummy: %v\n%s", ns, name, err, out)
	}
	l.mustIP("-n", ns, "addr", "add", addr, "dev", name)
	l.mustIP("-n", ns, "link", "set", name, "multicast", "on", "up")
}

// interfaces returns the names of h's interfaces in index order.
func (h *nsHost) interfaces() []string {
	h.lan.t.Helper()
	var names []string
	for _, line := range strings.Split(h.lan.mustIP("-n", h.ns, "-o", "link", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// cut takes h's bridge port down: h's own interface stays up, but no
// frame passes between h and the other hosts until restore.
func (h *nsHost) cut() {
	h.lan.t.Helper()
	h.lan.mustIP("-n", h.lan.sw, "link", "set", h.port, "down")
}

func (h *nsHost) restore() {
	h.lan.t.Helper()
	h.lan.mustIP("-n", h.lan.sw, "link", "set", h.port, "up")
}

// command returns skm with args, run in h's namespace with h.e's
// environment. skm dies with the test process, so a killed test run
// leaves no process behind.
func (h *nsHost) command(args ...string) *exec.Cmd {
	cmd := exec.Command(h.lan.ip, append([]string{"netns", "exec", h.ns, skmBin}, args...)...)
	cmd.Env = h.e.vars
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs skm in h to completion, as env.run does.
func (h *nsHost) run(args ...string) result {
	t := h.lan.t
	t.Helper()
	cmd := h.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run skm %v in %s: %v", args, h.ns, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func (h *nsHost) mustRun(args ...string) string {
	h.lan.t.Helper()
	r := h.run(args...)
	if r.code != 0 {
		h.lan.t.Fatalf("skm %s in %s: exit %d\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), h.ns, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// nsDaemon is a long-running skm process in a host namespace.
type nsDaemon struct {
	*daemon
	started time.Time // just before the process started
}

// start runs a long-lived skm command in h and waits until it has printed
// a first address on stdout. The process is stopped at cleanup.
func (h *nsHost) start(args ...string) *nsDaemon {
	t := h.lan.t
	t.Helper()
	cmd := h.command(args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &nsDaemon{daemon: &daemon{cmd: cmd, stderr: &lockedBuffer{}}, started: time.Now()}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()

	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("skm %v in %s exited before printing its addresses\nstderr:\n%s", args, h.ns, d.stderr)
		}
		d.addrs = append(d.addrs, l)
	case <-time.After(30 * time.Second):
		t.Fatalf("skm %v in %s printed no address in 30s\nstderr:\n%s", args, h.ns, d.stderr)
	}

	// Drain stdout so that the process never blocks on a full pipe.
	go func() {
		for range lines {
		}
	}()
	return d
}

// stopProcess sends SIGTERM, and SIGKILL if cmd has not exited after 10 s.
func stopProcess(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// lanAddr returns the first of d's addresses on the LAN subnet.
func (d *nsDaemon) lanAddr(t *testing.T) string {
	t.Helper()
	for _, a := range d.addrs {
		if strings.HasPrefix(a, "/ip4/"+lanSubnet+".") {
			return a
		}
	}
	t.Fatalf("no address in %s.0/24 among %v", lanSubnet, d.addrs)
	return ""
}

// firstLogTime returns the time field of d's first log line with msg,
// or false if there is none yet.
func (d *nsDaemon) firstLogTime(msg string) (time.Time, bool) {
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		if !strings.Contains(line, `msg="`+msg+`"`) {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err == nil {
			return at, true
		}
	}
	return time.Time{}, false
}

// enroll creates and enrolls a home for user in h, as env.enroll does,
// with a token from the CA running in ca.
func (h *nsHost) enroll(ca *nsHost, caHome, caAddr, user string) string {
	h.lan.t.Helper()
	home := h.e.path(user)
	token := strings.TrimSpace(ca.mustRun("ca", "token", user, "--home", caHome))
	h.mustRun("init", "--user", user, "--home", home, "--ca", caAddr, "--token", token)
	return home
}

func (h *nsHost) status(home, target string) string {
	h.lan.t.Helper()
	r := h.run("status", target, "--json", "--home", home)
	var rep struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if r.code == 2 || json.Unmarshal([]byte(r.stdout), &rep) != nil {
		return "error: " + r.stderr
	}
	if rep.Reason != "" {
		return rep.Status + " (" + rep.Reason + ")"
	}
	return rep.Status
}

func (h *nsHost) history(home, peer string) []historyEntry {
	h.lan.t.Helper()
	var out []historyEntry
	text := h.mustRun("history", peer, "--json", "--home", home)
	if err := json.Unmarshal([]byte(text), &out); err != nil {
		h.lan.t.Fatalf("history --json in %s: %v\n%s", h.ns, err, text)
	}
	return out
}

// connected returns the users that home's daemon has a session with.
func (h *nsHost) connected(home string) map[string]bool {
	h.lan.t.Helper()
	var peers []struct {
		User      string `json:"user"`
		Connected bool   `json:"connected"`
	}
	text := h.mustRun("peers", "--json", "--home", home)
	if err := json.Unmarshal([]byte(text), &peers); err != nil {
		h.lan.t.Fatalf("peers --json in %s: %v\n%s", h.ns, err, text)
	}
	out := map[string]bool{}
	for _, p := range peers {
		if p.Connected {
			out[p.User] = true
		}
	}
	return out
}

// sendID runs "skm send" in h and returns the message ID and state.
func (h *nsHost) sendID(home, to, text, wait string) (id, state string) {
	h.lan.t.Helper()
	out := strings.Fields(h.mustRun("send", to, text, "--home", home, "--wait", wait))
	if len(out) != 2 {
		h.lan.t.Fatalf("send printed %q, want an ID and a state", out)
	}
	return out[0], out[1]
}

// lanNode is an enrolled user on its own host, running "skm daemon
// --mdns" with no --peer.
type lanNode struct {
	*nsHost
	user, home string
	d          *nsDaemon
}

func TestNetnsHarnessTopology(t *testing.T) {
	l := newLAN(t)
	e := newEnv(t)
	plain := l.addHost(e, "plain", 2, false)
	dummy := l.addHost(e, "dummy", 3, true)
	cases := []struct {
		name string
		host *nsHost
		want []string
	}{
		{"plain host interfaces", plain, []string{"lo", l.prefix + "h2"}},
		{"dummy host interfaces", dummy, []string{"lo", l.prefix + "d3", l.prefix + "h3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.host.interfaces(); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("interfaces in index order: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNetnsMDNSChatAndRevocation(t *testing.T) {
	l := newLAN(t)
	e := newEnv(t)

	caHost := l.addHost(e, "ca", 1, false)
	caHome := e.path("ca")
	caHost.mustRun("ca", "init", "--home", caHome, "--name", "LAN Test CA")
	caDaemon := caHost.start("ca", "serve", "--home", caHome, "--listen", "/ip4/0.0.0.0/tcp/7400", "--mdns")
	caAddr := caDaemon.lanAddr(t)

	// dave's first interface after lo is a dummy with multicast on.
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	nodes := map[string]*lanNode{}
	for i, u := range users {
		h := l.addHost(e, u, i+2, u == "dave")
		nodes[u] = &lanNode{nsHost: h, user: u, home: h.enroll(caHost, caHome, caAddr, u)}
	}
	if got := nodes["dave"].interfaces(); len(got) < 2 || got[1] != l.prefix+"d5" {
		t.Fatalf("dave's interfaces in index order: %v, want the dummy first after lo", got)
	}
	for _, u := range users {
		n := nodes[u]
		n.d = n.start("daemon", "--home", n.home, "--listen", "/ip4/0.0.0.0/tcp/7401", "--mdns")
	}

	for _, u := range users {
		n := nodes[u]
		waitFor(t, 30*time.Second, u+"'s sessions with the other four", func() bool {
			return len(n.connected(n.home)) == len(users)-1
		})
	}
	logHandshakeTimes(t, users, nodes)
	// mDNS announces LAN addresses only: no peer is found at loopback.
	// dave's dummy interface has multicast, so alice finds dave at its
	// address too, and the session above came up over the veth.
	daveID := peerIDOf(t, nodes["dave"].d.addrs[0])
	var daveFound string
	for _, u := range users {
		for _, line := range strings.Split(nodes[u].d.stderr.String(), "\n") {
			if !strings.Contains(line, "peer found by mDNS") {
				continue
			}
			if strings.Contains(line, "/ip4/127.") {
				t.Errorf("%s found a peer at a loopback address: %s", u, line)
			}
			if u == "alice" && strings.Contains(line, daveID) {
				daveFound = line
			}
		}
	}
	for _, want := range []string{"/ip4/10.213.1.5/", "/ip4/" + nodes["dave"].addr + "/"} {
		if !strings.Contains(daveFound, want) {
			t.Errorf("alice found dave without %s: %q", want, daveFound)
		}
	}

	chats := []struct{ from, to string }{
		{"alice", "bob"}, {"bob", "alice"}, {"dave", "carol"}, {"carol", "dave"}, {"erin", "dave"},
	}
	for _, c := range chats {
		from := nodes[c.from]
		text := "hello " + c.to + ", this is " + c.from
		id, state := from.sendID(from.home, c.to, text, "15s")
		if state != "delivered" {
			t.Fatalf("%s to %s: state %q, want delivered", c.from, c.to, state)
		}
		to := nodes[c.to]
		if h := to.history(to.home, c.from); len(h) == 0 || h[len(h)-1].ID != id || h[len(h)-1].Text != text {
			t.Errorf("%s's newest message from %s is not %s %q: %+v", c.to, c.from, id, text, h)
		}
	}

	out := caHost.mustRun("ca", "revoke", "bob", "--reason", "keyCompromise", "--home", caHome)
	if !strings.Contains(out, "revoked bob (keyCompromise)") {
		t.Errorf("ca revoke printed %q", out)
	}
	revokedAt := time.Now()
	for _, u := range []string{"alice", "carol", "dave", "erin"} {
		n := nodes[u]
		waitFor(t, 15*time.Second, u+" to apply bob's revocation", func() bool {
			return n.status(n.home, "bob") == "revoked (keyCompromise)"
		})
		t.Logf("%s applied bob's revocation within %s", u, time.Since(revokedAt).Round(time.Millisecond))
	}

	// carol's link goes down. erin is revoked and alice writes to carol
	// while carol cannot hear either.
	carol, alice := nodes["carol"], nodes["alice"]
	carol.cut()
	caHost.mustRun("ca", "revoke", "erin", "--reason", "keyCompromise", "--home", caHome)
	for _, u := range []string{"alice", "dave"} {
		n := nodes[u]
		waitFor(t, 15*time.Second, u+" to apply erin's revocation", func() bool {
			return n.status(n.home, "erin") == "revoked (keyCompromise)"
		})
	}
	if s := carol.status(carol.home, "erin"); s != "valid" {
		t.Fatalf("carol's status of erin while cut off: %q, want valid", s)
	}
	var queued []string
	for i := range 3 {
		id, state := alice.sendID(alice.home, "carol", fmt.Sprintf("while your link was down, %d", i), "1s")
		if state != "queued" {
			t.Errorf("message %d to cut-off carol: state %q, want queued", i, state)
		}
		queued = append(queued, id)
	}
	if got := carol.history(carol.home, "alice"); len(got) != 0 {
		t.Fatalf("cut-off carol received %d messages from alice: %+v", len(got), got)
	}

	carol.restore()
	restoredAt := time.Now()
	waitFor(t, 30*time.Second, "carol to apply erin's revocation after restore", func() bool {
		return carol.status(carol.home, "erin") == "revoked (keyCompromise)"
	})
	t.Logf("carol applied erin's revocation %s after the link came back", time.Since(restoredAt).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "alice's messages to carol to be delivered", func() bool {
		h := alice.history(alice.home, "carol")
		for _, m := range h {
			if m.State != "delivered" {
				return false
			}
		}
		return len(h) == len(queued)
	})
	t.Logf("alice's queued messages reached carol %s after the link came back", time.Since(restoredAt).Round(time.Millisecond))
	got := carol.history(carol.home, "alice")
	if len(got) != len(queued) {
		t.Fatalf("carol has %d messages from alice, want %d exactly once: %+v", len(got), len(queued), got)
	}
	for i, m := range got {
		if m.ID != queued[i] {
			t.Errorf("carol's message %d is %s (%q), want %s: order or duplicate fault", i, m.ID, m.Text, queued[i])
		}
	}
}

// logHandshakeTimes logs, for each node, the time from starting its
// daemon to its first mDNS discovery and its first session, by the log
// lines' timestamps. The daemons start one after another, so a node's
// time includes waiting for the next one to start, except for the last
// node, which found every other one already running.
func logHandshakeTimes(t *testing.T, users []string, nodes map[string]*lanNode) {
	t.Helper()
	for _, u := range users {
		d := nodes[u].d
		found, okFound := d.firstLogTime("peer found by mDNS")
		session, okSession := d.firstLogTime("session established")
		if !okFound || !okSession {
			t.Errorf("%s's log lacks mDNS discovery or a session:\n%s", u, d.stderr)
			continue
		}
		t.Logf("%s: daemon start to first mDNS peer found %s, to first session %s",
			u, found.Sub(d.started).Round(time.Millisecond), session.Sub(d.started).Round(time.Millisecond))
	}
}
