package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// skmBin is the skm binary that TestMain builds for the end-to-end tests.
var skmBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skm-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	skmBin = filepath.Join(dir, "skm")
	build := exec.Command("go", "build", "-o", skmBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build skm:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a sandbox for skm processes: its own HOME and passphrase.
type env struct {
	t    *testing.T
	dir  string
	vars []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	return &env{t: t, dir: dir, vars: []string{
		"HOME=" + dir,
		"PATH=" + os.Getenv("PATH"),
		"SKM_PASSPHRASE=correct horse battery staple",
	}}
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// result is the outcome of one finished skm command.
type result struct {
	stdout, stderr string
	code           int
}

// run runs skm with args to completion.
func (e *env) run(args ...string) result {
	e.t.Helper()
	cmd := exec.Command(skmBin, args...)
	cmd.Env = e.vars
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run skm %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// mustRun runs skm and fails the test unless it exits 0.
func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("skm %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// daemon is a long-running skm process.
type daemon struct {
	cmd    *exec.Cmd
	addrs  []string
	stderr *lockedBuffer
}

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs a long-lived skm command and waits until it has printed
// wantAddrs multiaddrs on stdout. The process is stopped at cleanup.
func (e *env) start(wantAddrs int, args ...string) *daemon {
	e.t.Helper()
	cmd := exec.Command(skmBin, args...)
	cmd.Env = e.vars
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	d := &daemon{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(30 * time.Second)
	for len(d.addrs) < wantAddrs {
		select {
		case l, ok := <-lines:
			if !ok {
				e.t.Fatalf("skm %v exited before printing its addresses\nstderr:\n%s", args, d.stderr)
			}
			d.addrs = append(d.addrs, l)
		case <-timeout:
			e.t.Fatalf("skm %v printed no addresses in 30s\nstderr:\n%s", args, d.stderr)
		}
	}
	go func() {
		for range lines {
		}
	}()
	return d
}

// startCA creates a CA in e and serves it on loopback TCP and QUIC.
func (e *env) startCA(extra ...string) (caHome string, d *daemon) {
	e.t.Helper()
	caHome = e.path("ca")
	e.mustRun("ca", "init", "--home", caHome, "--name", "E2E Test CA")
	args := append([]string{"ca", "serve", "--home", caHome,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1"}, extra...)
	d = e.start(2, args...)
	return caHome, d
}

func TestEnrollTwoNodesVerifiedByOpenSSL(t *testing.T) {
	openssl := requireOpenSSL(t)
	e := newEnv(t)
	caHome, ca := e.startCA()
	for _, a := range ca.addrs {
		if !strings.Contains(a, "/p2p/12D3KooW") {
			t.Errorf("CA address %q lacks a /p2p/ peer ID", a)
		}
	}
	users := []string{"alice", "bob"}
	tokens := map[string]string{}
	for _, u := range users {
		tokens[u] = strings.TrimSpace(e.mustRun("ca", "token", u, "--home", caHome))
	}

	// Enroll both nodes at once, alice over TCP and bob over QUIC.
	var wg sync.WaitGroup
	results := make([]result, len(users))
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run("init", "--home", e.path(u), "--user", u, "--ca", ca.addrs[i], "--token", tokens[u])
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("init %s: exit %d\n%s%s", users[i], r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "registered with key version 1") {
			t.Errorf("init %s output lacks the registration line:\n%s", users[i], r.stdout)
		}
	}

	caPEM := e.path("ca.pem")
	writeFile(t, caPEM, e.mustRun("ca", "cert", "--pem", "--home", caHome))
	for _, u := range users {
		leaf := e.path(u + ".pem")
		writeFile(t, leaf, e.mustRun("cert", "--pem", "--home", e.path(u)))
		out, err := exec.Command(openssl, "verify", "-CAfile", caPEM, leaf).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Errorf("openssl verify %s: %v\n%s", u, err, out)
		}
		text, err := exec.Command(openssl, "x509", "-noout", "-text", "-in", leaf).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl x509 %s: %v\n%s", u, err, text)
		}
		for _, want := range []string{"CN=" + u, "URI:skm:key-version:1", "URI:skm:peer:12D3KooW", "TLS Web Client Authentication"} {
			if !strings.Contains(strings.ReplaceAll(string(text), "CN = ", "CN="), want) {
				t.Errorf("openssl shows no %q in %s's certificate", want, u)
			}
		}
	}

	var issued []struct {
		User       string `json:"user"`
		KeyVersion int    `json:"key_version"`
		Status     string `json:"status"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("ca", "list", "--json", "--home", caHome)), &issued); err != nil {
		t.Fatalf("ca list --json: %v", err)
	}
	if len(issued) != 2 {
		t.Fatalf("ca list shows %d certificates, want 2: %+v", len(issued), issued)
	}
	for _, c := range issued {
		if c.KeyVersion != 1 || c.Status != "valid" {
			t.Errorf("ca list entry %+v, want key version 1 and status valid", c)
		}
	}
	if log := ca.stderr.String(); strings.Count(log, "certificate issued") != 2 {
		t.Errorf("CA log has %d issuance lines, want 2:\n%s", strings.Count(log, "certificate issued"), log)
	}
}

func TestEnrollRejections(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	token := strings.TrimSpace(e.mustRun("ca", "token", "alice", "--home", caHome))
	e.mustRun("init", "--home", e.path("alice"), "--user", "alice", "--ca", ca.addrs[0], "--token", token)

	closed := "/ip4/127.0.0.1/tcp/1/p2p/" + peerIDOf(t, ca.addrs[0])
	cases := []struct {
		name  string
		args  []string
		wants string
	}{
		{"reused token", []string{"init", "--user", "carol", "--ca", ca.addrs[0], "--token", token}, "already used"},
		{"unknown token", []string{"init", "--user", "carol", "--ca", ca.addrs[0], "--token", "nope"}, "unknown enrollment token"},
		{"missing token", []string{"init", "--user", "carol", "--ca", ca.addrs[0]}, "token is required"},
		{"unreachable CA", []string{"init", "--user", "carol", "--ca", closed, "--token", "x"}, "cannot reach the CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "node")
			r := e.run(append(tc.args, "--home", home)...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\nstderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.wants) {
				t.Errorf("stderr lacks %q:\n%s", tc.wants, r.stderr)
			}
		})
	}

	t.Run("taken name", func(t *testing.T) {
		fresh := strings.TrimSpace(e.mustRun("ca", "token", "alice", "--home", caHome))
		r := e.run("init", "--home", e.path("alice2"), "--user", "alice", "--ca", ca.addrs[0], "--token", fresh)
		if r.code != 1 || !strings.Contains(r.stderr, "is taken") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	// The CA logged each rejection and still serves: bob enrolls.
	bobToken := strings.TrimSpace(e.mustRun("ca", "token", "bob", "--home", caHome))
	e.mustRun("init", "--home", e.path("bob"), "--user", "bob", "--ca", ca.addrs[1], "--token", bobToken)
	if n := strings.Count(ca.stderr.String(), "enrollment rejected"); n != 4 {
		t.Errorf("CA logged %d rejections, want 4:\n%s", n, ca.stderr)
	}
}

func TestRetryEnrollAfterFailure(t *testing.T) {
	e := newEnv(t)
	caHome, ca := e.startCA()
	home := e.path("alice")
	r := e.run("init", "--home", home, "--user", "alice", "--ca", ca.addrs[0], "--token", "wrong")
	if r.code != 1 || !strings.Contains(r.stderr, "were kept") {
		t.Fatalf("first init: exit %d\n%s", r.code, r.stderr)
	}
	token := strings.TrimSpace(e.mustRun("ca", "token", "alice", "--home", caHome))
	out := e.mustRun("init", "--home", home, "--user", "alice", "--ca", ca.addrs[0], "--token", token)
	if !strings.Contains(out, "already has keys for user alice") {
		t.Errorf("second init did not reuse the keys:\n%s", out)
	}
	r = e.run("init", "--home", home, "--user", "bob")
	if r.code != 1 || !strings.Contains(r.stderr, `already belongs to user "alice"`) {
		t.Errorf("init for another user: exit %d\n%s", r.code, r.stderr)
	}
}

func TestStoreErrors(t *testing.T) {
	e := newEnv(t)
	caHome, _ := e.startCA()

	t.Run("second server on one home", func(t *testing.T) {
		r := e.run("ca", "serve", "--home", caHome, "--listen", "/ip4/127.0.0.1/tcp/0")
		if r.code != 1 || !strings.Contains(r.stderr, "store in use") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	home := e.path("alice")
	e.mustRun("init", "--home", home, "--user", "alice")
	before := snapshot(t, home)
	t.Run("wrong passphrase", func(t *testing.T) {
		cmd := exec.Command(skmBin, "cert", "--home", home)
		cmd.Env = append(e.vars[:2:2], "SKM_PASSPHRASE=wrong")
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "wrong passphrase") {
			t.Errorf("exit %d, output:\n%s", cmd.ProcessState.ExitCode(), out)
		}
		if after := snapshot(t, home); after != before {
			t.Errorf("home changed after a wrong passphrase:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	t.Run("no passphrase", func(t *testing.T) {
		cmd := exec.Command(skmBin, "cert", "--home", home)
		cmd.Env = e.vars[:2:2]
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "SKM_PASSPHRASE") {
			t.Errorf("exit %d, output:\n%s", cmd.ProcessState.ExitCode(), out)
		}
	})
	t.Run("not enrolled", func(t *testing.T) {
		r := e.run("cert", "--home", home)
		if r.code != 1 || !strings.Contains(r.stderr, "not enrolled") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
	t.Run("no store", func(t *testing.T) {
		r := e.run("cert", "--home", e.path("nobody"))
		if r.code != 1 || !strings.Contains(r.stderr, "run 'skm init'") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		args []string
	}{
		{"unknown command", []string{"frobnicate"}},
		{"unknown flag", []string{"init", "--frob"}},
		{"missing user", []string{"init"}},
		{"invalid user", []string{"init", "--user", "Alice!"}},
		{"extra argument", []string{"cert", "extra"}},
		{"token without user", []string{"ca", "token"}},
		{"bad listen address", []string{"ca", "serve", "--listen", "not-a-multiaddr"}},
		{"bad log level", []string{"version", "--log-level", "loud"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(tc.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2\nstderr:\n%s", r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "skm: ") {
				t.Errorf("stderr does not start with the program name:\n%s", r.stderr)
			}
		})
	}
	for _, args := range [][]string{{"--help"}, {"ca", "serve", "--help"}, {"init", "--help"}} {
		r := e.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("skm %v: exit %d, stdout:\n%s", args, r.code, r.stdout)
		}
	}
}

func requireOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is not installed; .ci/run installs it")
	}
	return path
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func peerIDOf(t *testing.T, addr string) string {
	t.Helper()
	i := strings.LastIndex(addr, "/p2p/")
	if i < 0 {
		t.Fatalf("address %q has no /p2p/ part", addr)
	}
	return addr[i+len("/p2p/"):]
}

// snapshot describes every file under dir: name, size, mode, mtime.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s %d\n", path, info.Size(), info.Mode(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
