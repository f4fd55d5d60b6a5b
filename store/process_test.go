package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Environment variables that make the test binary run as a helper process
// in TestHelperProcess.
const (
	helperModeEnv   = "SKM_STORE_HELPER_MODE"
	helperDirEnv    = "SKM_STORE_HELPER_DIR"
	helperPrefixEnv = "SKM_STORE_HELPER_PREFIX"
)

// Helper modes. Each helper prints one line per event on stdout.
const (
	// modeHold opens the store, prints "open" and keeps it open until its
	// stdin is closed.
	modeHold = "hold"
	// modeTryOpen opens the store once and prints "result: ok",
	// "result: in-use" or "result: error: MESSAGE".
	modeTryOpen = "try-open"
	// modeWrite opens the store and commits records until it is killed,
	// printing each key once its transaction has committed.
	modeWrite = "write"
	// modeIdle creates a store with the default KDF, writes 100 records,
	// prints "ready" and idles until its stdin is closed.
	modeIdle = "idle"
)

// TestHelperProcess is not a test. The other tests in this file run the
// test binary again with helperModeEnv set, and this function then acts as
// the second process.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		t.Skip("runs only as a helper process")
	}
	dir := os.Getenv(helperDirEnv)
	var err error
	switch mode {
	case modeHold:
		err = holdStore(dir)
	case modeTryOpen:
		tryOpen(dir)
	case modeWrite:
		err = writeUntilKilled(dir, os.Getenv(helperPrefixEnv))
	case modeIdle:
		err = idleStore(dir)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func holdStore(dir string) error {
	s, err := Open(dir, testPassphrase, nil)
	if err != nil {
		return err
	}
	fmt.Println("open")
	io.Copy(io.Discard, os.Stdin)
	return s.Close()
}

func tryOpen(dir string) {
	s, err := Open(dir, testPassphrase, nil)
	switch {
	case err == nil:
		s.Close()
		fmt.Println("result: ok")
	case errors.Is(err, ErrInUse):
		fmt.Println("result: in-use")
	default:
		fmt.Printf("result: error: %v\n", err)
	}
}

// crashValue returns the value that the write helper stores under key in
// table. Half of the Issued values are above badger's value threshold, so
// both the LSM tree and the value log are exercised.
func crashValue(table Table, key string) []byte {
	value := []byte(string(table) + "=" + key + ";")
	if table == Issued && sha256.Sum256([]byte(key))[0]&1 == 1 {
		value = bytes.Repeat(value, 2048/len(value)+1)
	}
	return value
}

func writeUntilKilled(dir, prefix string) error {
	s, err := Open(dir, testPassphrase, nil)
	if err != nil {
		return err
	}
	// The cap only stops a helper whose parent never kills it.
	for i := range 100000 {
		key := fmt.Sprintf("%s-%06d", prefix, i)
		err := s.Update(func(tx *Tx) error {
			if err := tx.Put(Meta, key, crashValue(Meta, key)); err != nil {
				return err
			}
			return tx.Put(Issued, key, crashValue(Issued, key))
		})
		if err != nil {
			return err
		}
		fmt.Println(key)
	}
	return s.Close()
}

func idleStore(dir string) error {
	s, err := Create(dir, testPassphrase, nil)
	if err != nil {
		return err
	}
	for i := range 100 {
		key := strconv.Itoa(i)
		if err := s.Put(Meta, key, []byte("small record "+key)); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return s.Close()
}

// syncBuffer is a bytes.Buffer that a helper's stderr can be copied into
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *syncBuffer
}

// startHelper runs the test binary as a helper in mode on the store in
// dir. When the test ends, it closes the helper's stdin and waits for it,
// and logs the helper's stderr if the test failed.
func startHelper(t *testing.T, mode, dir string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Env = append(cmd.Env, env...)
	h := &helper{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = h.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s helper: %v", mode, err)
	}
	h.stdin = stdin
	h.stdout = bufio.NewReader(stdout)
	t.Cleanup(func() {
		h.stdin.Close()
		h.cmd.Wait()
		if t.Failed() {
			t.Logf("%s helper stderr:\n%s", mode, h.stderr.String())
		}
	})
	return h
}

// readLine returns the helper's next complete stdout line without its
// newline, and false at the end of the output. A last line without a
// newline is dropped, because the helper was killed while it wrote it.
func (h *helper) readLine(t *testing.T) (string, bool) {
	t.Helper()
	line, err := h.stdout.ReadString('\n')
	if err == io.EOF {
		return "", false
	}
	if err != nil {
		t.Fatalf("read helper output: %v", err)
	}
	return strings.TrimSuffix(line, "\n"), true
}

// expectLine fails the test unless the helper's next line is want.
func (h *helper) expectLine(t *testing.T, want string) {
	t.Helper()
	line, ok := h.readLine(t)
	if !ok {
		t.Fatalf("helper exited before it printed %q", want)
	}
	if line != want {
		t.Fatalf("helper printed %q, want %q", line, want)
	}
}

// stop closes the helper's stdin and fails the test unless the helper then
// exits with status 0.
func (h *helper) stop(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper exit: %v", err)
	}
}

func TestOpenInUseOtherProcess(t *testing.T) {
	dir := createClosedStore(t)

	t.Run("parent holds store", func(t *testing.T) {
		s := openStore(t, dir)
		h := startHelper(t, modeTryOpen, dir)
		h.expectLine(t, "result: in-use")
		closeStore(t, s)
	})

	t.Run("child holds store", func(t *testing.T) {
		h := startHelper(t, modeHold, dir)
		h.expectLine(t, "open")

		s, err := Open(dir, testPassphrase, nil)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, ErrInUse) {
			t.Errorf("Open while another process has the store: got %v, want ErrInUse", err)
		}
		_, err = Create(dir, testPassphrase, cheapOptions())
		if !errors.Is(err, ErrInUse) {
			t.Errorf("Create while another process has the store: got %v, want ErrInUse", err)
		}

		h.stop(t)
		s, err = Open(dir, testPassphrase, nil)
		if err != nil {
			t.Fatalf("Open after the other process closed the store: %v", err)
		}
		closeStore(t, s)
	})
}

func TestCommittedRecordsSurviveKill(t *testing.T) {
	dir := createClosedStore(t)
	var committed []string
	const cycles = 5
	for cycle := range cycles {
		h := startHelper(t, modeWrite, dir, fmt.Sprintf("%s=c%d", helperPrefixEnv, cycle))
		// Kill at a different point in each cycle.
		killAfter := 10 + 10*cycle
		printed := 0
		for {
			line, ok := h.readLine(t)
			if !ok {
				break
			}
			if strings.HasPrefix(line, "error: ") {
				t.Fatalf("cycle %d: write helper: %s", cycle, line)
			}
			committed = append(committed, line)
			printed++
			if printed == killAfter {
				if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatalf("cycle %d: kill write helper: %v", cycle, err)
				}
			}
		}
		err := h.cmd.Wait()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Fatalf("cycle %d: write helper exit: got %v, want a kill", cycle, err)
		}
		status, ok := exitErr.Sys().(syscall.WaitStatus)
		if !ok || !status.Signaled() || status.Signal() != syscall.SIGKILL {
			t.Fatalf("cycle %d: write helper exit: got %v, want SIGKILL", cycle, err)
		}
		if printed < killAfter {
			t.Fatalf("cycle %d: write helper committed %d records, want at least %d",
				cycle, printed, killAfter)
		}

		checkCommitted(t, dir, committed)
	}
}

// checkCommitted opens the store in dir and checks that every committed
// key has both of its records, and that no transaction was half applied.
func checkCommitted(t *testing.T, dir string, committed []string) {
	t.Helper()
	s, err := Open(dir, testPassphrase, nil)
	if err != nil {
		t.Fatalf("Open after kill: %v", err)
	}
	defer closeStore(t, s)

	for _, key := range committed {
		for _, table := range []Table{Meta, Issued} {
			got, err := s.Get(table, key)
			if err != nil {
				t.Errorf("Get %s %q after kill: %v", table, key, err)
				continue
			}
			if want := crashValue(table, key); !bytes.Equal(got, want) {
				t.Errorf("Get %s %q after kill: got %d bytes, want %d bytes %q...",
					table, key, len(got), len(want), want[:min(len(want), 20)])
			}
		}
	}

	meta := collect(t, s, Meta)
	issued := collect(t, s, Issued)
	if len(meta) != len(issued) {
		t.Fatalf("after kill: %d Meta records but %d Issued records", len(meta), len(issued))
	}
	for i := range meta {
		if meta[i].key != issued[i].key {
			t.Fatalf("after kill: record %d is %q in Meta but %q in Issued",
				i, meta[i].key, issued[i].key)
		}
	}
}

// readRSS returns the resident set size of process pid in KiB, from the
// VmRSS line of /proc/PID/status.
func readRSS(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("read process status: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		return kib
	}
	t.Fatalf("no VmRSS line in /proc/%d/status", pid)
	return 0
}

// TestIdleStoreMemory reports the resident memory of a process with one
// idle store, created with the default KDF as the daemon does. It is the
// only test that pays for DefaultKDF.
func TestIdleStoreMemory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	h := startHelper(t, modeIdle, dir)
	h.expectLine(t, "ready")
	kib := readRSS(t, h.cmd.Process.Pid)
	t.Logf("VmRSS of a process with one idle store: %d KiB (race detector: %v)",
		kib, raceEnabled)
	// The race detector's shadow memory covers argon2id's 64 MiB too, so
	// the bound applies only to normal builds.
	if !raceEnabled && kib > 200<<10 {
		t.Errorf("VmRSS of an idle store process is %d KiB, want below 200 MiB", kib)
	}
	h.stop(t)

	s := openStore(t, dir)
	if got, err := s.Get(Meta, "99"); err != nil || string(got) != "small record 99" {
		t.Errorf("Get Meta \"99\" from the helper's store = %q, %v", got, err)
	}
}
