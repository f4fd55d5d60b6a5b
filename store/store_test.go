package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testPassphrase opens every store the tests create.
var testPassphrase = []byte("correct horse battery staple")

// cheapKDF keeps key derivation fast in tests: 64 KiB and one pass, where
// DefaultKDF takes 64 MiB and three.
var cheapKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func cheapOptions() *Options {
	kdf := cheapKDF
	return &Options{KDF: &kdf}
}

// createStore creates a store with the cheap KDF in a new directory and
// closes it when the test ends. It returns the open store.
func createStore(t *testing.T) *Store {
	t.Helper()
	s, err := Create(filepath.Join(t.TempDir(), "store"), testPassphrase, cheapOptions())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// createClosedStore creates a store with the cheap KDF, closes it and
// returns its directory.
func createClosedStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Create(dir, testPassphrase, cheapOptions())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after Create: %v", err)
	}
	return dir
}

// openStore opens the store in dir with the test passphrase and closes it
// when the test ends.
func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, testPassphrase, nil)
	if err != nil {
		t.Fatalf("Open %s: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// record is one table entry that the tests write and expect back.
type record struct {
	table Table
	key   string
	value string
}

// collect returns the records that Each visits in t, in visiting order.
func collect(t *testing.T, s *Store, table Table) []record {
	t.Helper()
	var got []record
	err := s.View(func(tx *Tx) error {
		return tx.Each(table, func(key string, value []byte) error {
			got = append(got, record{table, key, string(value)})
			return nil
		})
	})
	if err != nil {
		t.Fatalf("Each %s: %v", table, err)
	}
	return got
}

func TestRecordsRoundTrip(t *testing.T) {
	s := createStore(t)
	// Written out of order, with keys that share prefixes across tables,
	// to check both the ordering and the table boundaries of Each. The
	// table "users" starts with the name of Users.
	longerName := Table(string(Users) + "s")
	written := []record{
		{longerName, "alice", "not a Users record"},
		{Users, "carol", "serial-3"},
		{Keys, "node/2", "key two"},
		{Users, "alice", "serial-1"},
		{Certs, "anchor", "root cert"},
		{Keys, "node/1", "key one"},
		{Users, "bob", "serial-2"},
		{Keys, "ca", "ca key"},
		{Issued, "00ff", "issued cert"},
		{Meta, "user", "alice"},
		{Tokens, "user", "token hash"},
	}
	err := s.Update(func(tx *Tx) error {
		for _, r := range written {
			if err := tx.Put(r.table, r.key, []byte(r.value)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update with Put: %v", err)
	}

	dir := s.Dir()
	closeStore(t, s)
	s = openStore(t, dir)

	for _, r := range written {
		got, err := s.Get(r.table, r.key)
		if err != nil {
			t.Errorf("Get %s %q after reopen: %v", r.table, r.key, err)
			continue
		}
		if string(got) != r.value {
			t.Errorf("Get %s %q = %q, want %q", r.table, r.key, got, r.value)
		}
	}

	tables := []Table{Keys, Certs, Meta, Issued, Users, Tokens, Peers, longerName}
	for _, table := range tables {
		var want []record
		for _, r := range written {
			if r.table == table {
				want = append(want, r)
			}
		}
		slices.SortFunc(want, func(a, b record) int { return strings.Compare(a.key, b.key) })
		got := collect(t, s, table)
		if !slices.Equal(got, want) {
			t.Errorf("Each %s = %v, want %v", table, got, want)
		}
	}
}

func TestGetMissingRecord(t *testing.T) {
	s := createStore(t)
	if err := s.Put(Meta, "user", []byte("alice")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	tests := []struct {
		name  string
		table Table
		key   string
	}{
		{"missing key same table", Meta, "other"},
		{"same key other table", Users, "user"},
		{"empty key", Meta, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Get(tt.table, tt.key)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Get %s %q: got %v, want ErrNotFound", tt.table, tt.key, err)
			}
		})
	}
}

func TestGetReturnsCopy(t *testing.T) {
	s := createStore(t)
	if err := s.Put(Meta, "user", []byte("alice")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	first, err := s.Get(Meta, "user")
	if err != nil {
		t.Fatalf("first Get: %v", err)
	}
	copy(first, "XXXXX")
	second, err := s.Get(Meta, "user")
	if err != nil {
		t.Fatalf("second Get: %v", err)
	}
	if string(second) != "alice" {
		t.Errorf("Get after changing the first result = %q, want %q", second, "alice")
	}
}

func TestInsertTakenKey(t *testing.T) {
	s := createStore(t)
	err := s.Update(func(tx *Tx) error { return tx.Insert(Users, "alice", []byte("serial-1")) })
	if err != nil {
		t.Fatalf("first Insert: %v", err)
	}

	err = s.Update(func(tx *Tx) error { return tx.Insert(Users, "alice", []byte("serial-2")) })
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Insert: got %v, want ErrExists", err)
	}
	got, err := s.Get(Users, "alice")
	if err != nil {
		t.Fatalf("Get after failed Insert: %v", err)
	}
	if string(got) != "serial-1" {
		t.Errorf("value after failed Insert = %q, want %q", got, "serial-1")
	}

	// The same key in another table is a different record.
	err = s.Update(func(tx *Tx) error { return tx.Insert(Peers, "alice", []byte("peer")) })
	if err != nil {
		t.Errorf("Insert of the same key in another table: %v", err)
	}

	// A key written earlier in the same transaction is taken too.
	err = s.Update(func(tx *Tx) error {
		if err := tx.Put(Users, "bob", []byte("serial-3")); err != nil {
			return err
		}
		return tx.Insert(Users, "bob", []byte("serial-4"))
	})
	if !errors.Is(err, ErrExists) {
		t.Errorf("Insert after Put in one transaction: got %v, want ErrExists", err)
	}
	if _, err := s.Get(Users, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a key from a failed transaction: got %v, want ErrNotFound", err)
	}
}

func TestDeleteRecord(t *testing.T) {
	s := createStore(t)
	if err := s.Put(Tokens, "t1", []byte("one")); err != nil {
		t.Fatalf("Put t1: %v", err)
	}
	if err := s.Put(Tokens, "t2", []byte("two")); err != nil {
		t.Fatalf("Put t2: %v", err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.Delete(Tokens, "t1") }); err != nil {
		t.Fatalf("Delete t1: %v", err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.Delete(Tokens, "missing") }); err != nil {
		t.Errorf("Delete of a missing record: %v", err)
	}

	dir := s.Dir()
	closeStore(t, s)
	s = openStore(t, dir)

	if _, err := s.Get(Tokens, "t1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a deleted record: got %v, want ErrNotFound", err)
	}
	want := []record{{Tokens, "t2", "two"}}
	if got := collect(t, s, Tokens); !slices.Equal(got, want) {
		t.Errorf("Each after Delete = %v, want %v", got, want)
	}
	// A deleted key can be inserted again.
	err := s.Update(func(tx *Tx) error { return tx.Insert(Tokens, "t1", []byte("again")) })
	if err != nil {
		t.Errorf("Insert after Delete: %v", err)
	}
}

func TestEachStopsAtError(t *testing.T) {
	s := createStore(t)
	for _, key := range []string{"a", "b", "c"} {
		if err := s.Put(Peers, key, []byte(key)); err != nil {
			t.Fatalf("Put %q: %v", key, err)
		}
	}
	errStop := errors.New("stop here")
	var visited []string
	err := s.View(func(tx *Tx) error {
		return tx.Each(Peers, func(key string, _ []byte) error {
			visited = append(visited, key)
			if key == "b" {
				return errStop
			}
			return nil
		})
	})
	if !errors.Is(err, errStop) {
		t.Errorf("Each: got %v, want the callback's error", err)
	}
	if want := []string{"a", "b"}; !slices.Equal(visited, want) {
		t.Errorf("Each visited %v, want %v", visited, want)
	}
}

func TestUpdateErrorDiscardsWrites(t *testing.T) {
	s := createStore(t)
	errAbort := errors.New("abort")
	err := s.Update(func(tx *Tx) error {
		if err := tx.Put(Meta, "a", []byte("1")); err != nil {
			return err
		}
		if err := tx.Put(Meta, "b", []byte("2")); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update: got %v, want the callback's error", err)
	}
	if got := collect(t, s, Meta); len(got) != 0 {
		t.Errorf("Meta after a failed Update = %v, want no records", got)
	}
}

func TestMaxValueSize(t *testing.T) {
	s := createStore(t)
	largest := bytes.Repeat([]byte{0xa5}, MaxValueSize)
	tooLarge := bytes.Repeat([]byte{0x5a}, MaxValueSize+1)

	if err := s.Put(Certs, "too-large", tooLarge); err == nil {
		t.Errorf("Put of %d bytes succeeded, want an error", len(tooLarge))
	}
	err := s.Update(func(tx *Tx) error { return tx.Insert(Certs, "too-large", tooLarge) })
	if err == nil {
		t.Errorf("Insert of %d bytes succeeded, want an error", len(tooLarge))
	}
	if err := s.Put(Certs, "largest", largest); err != nil {
		t.Fatalf("Put of exactly MaxValueSize bytes: %v", err)
	}

	dir := s.Dir()
	closeStore(t, s)
	s = openStore(t, dir)

	got, err := s.Get(Certs, "largest")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if !bytes.Equal(got, largest) {
		t.Errorf("Get returned %d bytes that differ from the %d written", len(got), len(largest))
	}
	if _, err := s.Get(Certs, "too-large"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of the rejected record: got %v, want ErrNotFound", err)
	}
}

func TestCreateExistingStore(t *testing.T) {
	dir := createClosedStore(t)
	s := openStore(t, dir)
	if err := s.Put(Meta, "user", []byte("alice")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	closeStore(t, s)

	_, err := Create(dir, []byte("another passphrase"), cheapOptions())
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Create over a store: got %v, want ErrExists", err)
	}
	// The first store is intact and keeps its passphrase.
	s = openStore(t, dir)
	got, err := s.Get(Meta, "user")
	if err != nil {
		t.Fatalf("Get after a failed Create: %v", err)
	}
	if string(got) != "alice" {
		t.Errorf("Get after a failed Create = %q, want %q", got, "alice")
	}
}

func TestOpenWithoutStore(t *testing.T) {
	tests := []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"empty directory", func(t *testing.T) string { return t.TempDir() }},
		{"missing directory", func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "missing")
		}},
		{"data without kdf file", func(t *testing.T) string {
			dir := createClosedStore(t)
			if err := os.Remove(filepath.Join(dir, kdfFile)); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			s, err := Open(dir, testPassphrase, nil)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, ErrNoStore) {
				t.Errorf("Open: got %v, want ErrNoStore", err)
			}
		})
	}
}

func TestCreateEmptyPassphrase(t *testing.T) {
	for _, pass := range [][]byte{nil, {}} {
		t.Run(fmt.Sprintf("passphrase %#v", pass), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s, err := Create(dir, pass, cheapOptions())
			if err == nil {
				s.Close()
				t.Fatal("Create with an empty passphrase succeeded, want an error")
			}
			if Exists(dir) {
				t.Errorf("Create with an empty passphrase left a store in %s", dir)
			}
		})
	}
}

func TestOpenEmptyPassphrase(t *testing.T) {
	dir := createClosedStore(t)
	s, err := Open(dir, nil, nil)
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with an empty passphrase: got %v, want ErrWrongPassphrase", err)
	}
}

func TestCreateRejectsInvalidKDF(t *testing.T) {
	tests := []struct {
		name string
		kdf  KDFParams
	}{
		{"time zero", KDFParams{Time: 0, MemoryKiB: 64, Threads: 1}},
		{"time above limit", KDFParams{Time: maxKDFTime + 1, MemoryKiB: 64, Threads: 1}},
		{"memory below threads", KDFParams{Time: 1, MemoryKiB: 15, Threads: 2}},
		{"memory above limit", KDFParams{Time: 1, MemoryKiB: maxKDFMemoryKiB + 1, Threads: 1}},
		{"threads zero", KDFParams{Time: 1, MemoryKiB: 64, Threads: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s, err := Create(dir, testPassphrase, &Options{KDF: &tt.kdf})
			if err == nil {
				s.Close()
				t.Fatalf("Create with %+v succeeded, want an error", tt.kdf)
			}
			if Exists(dir) {
				t.Errorf("Create with %+v left a store in %s", tt.kdf, dir)
			}
		})
	}
}

// fileState is what a test compares to prove that a file did not change.
type fileState struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
	sum   [sha256.Size]byte
}

// snapshotDir records the state of every file and directory under dir,
// by path relative to dir.
func snapshotDir(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	states := make(map[string]fileState)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := fileState{mode: info.Mode(), size: info.Size(), mtime: info.ModTime()}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			st.sum = sha256.Sum256(data)
		}
		if d.IsDir() {
			st.size = 0 // directory sizes are filesystem bookkeeping
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		states[rel] = st
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return states
}

// compareSnapshots reports every path that was added, removed or changed.
func compareSnapshots(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	for path, b := range before {
		a, ok := after[path]
		if !ok {
			t.Errorf("%s was removed", path)
			continue
		}
		if a.mode != b.mode {
			t.Errorf("%s: mode changed from %v to %v", path, b.mode, a.mode)
		}
		if a.size != b.size {
			t.Errorf("%s: size changed from %d to %d", path, b.size, a.size)
		}
		if !a.mtime.Equal(b.mtime) {
			t.Errorf("%s: mtime changed from %v to %v", path, b.mtime, a.mtime)
		}
		if a.sum != b.sum {
			t.Errorf("%s: content changed", path)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("%s was added", path)
		}
	}
}

func TestOpenWrongPassphrase(t *testing.T) {
	dir := createClosedStore(t)
	s := openStore(t, dir)
	if err := s.Put(Keys, "node", []byte("secret key")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	closeStore(t, s)

	before := snapshotDir(t, dir)
	for _, pass := range []string{"wrong", "correct horse battery stapl", "correct horse battery staple "} {
		s, err := Open(dir, []byte(pass), nil)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("Open with passphrase %q: got %v, want ErrWrongPassphrase", pass, err)
		}
	}
	compareSnapshots(t, before, snapshotDir(t, dir))

	// The right passphrase still opens the store afterwards.
	s = openStore(t, dir)
	if _, err := s.Get(Keys, "node"); err != nil {
		t.Errorf("Get after failed opens: %v", err)
	}
}

// TestOpenForeignKDFFile replaces kdf.json with the one of another store
// that has the same passphrase. The passphrase check passes, so badger is
// the one that rejects the derived key. badger has opened its directory by
// then: it creates and removes its pid file and truncates MANIFEST to its
// own length, which changes mtimes, so only the contents are compared.
func TestOpenForeignKDFFile(t *testing.T) {
	dir := createClosedStore(t)
	other := createClosedStore(t)
	data, err := os.ReadFile(filepath.Join(other, kdfFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, kdfFile), data, 0o600); err != nil {
		t.Fatal(err)
	}

	before := snapshotDir(t, dir)
	s, err := Open(dir, testPassphrase, nil)
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with a foreign kdf.json: got %v, want ErrWrongPassphrase", err)
	}
	compareSnapshots(t, withoutMtimes(before), withoutMtimes(snapshotDir(t, dir)))
}

func withoutMtimes(states map[string]fileState) map[string]fileState {
	out := make(map[string]fileState, len(states))
	for path, st := range states {
		st.mtime = time.Time{}
		out[path] = st
	}
	return out
}

func TestOpenKeepsBadgerKey(t *testing.T) {
	s := createStore(t)
	dir := s.Dir()
	check := func(when string) {
		t.Helper()
		want, err := readKDFFile(dir, testPassphrase)
		if err != nil {
			t.Fatalf("derive key %s: %v", when, err)
		}
		// badger encrypts every new data key with this slice, for example
		// when it rotates data keys while the store is open.
		if got := s.db.Opts().EncryptionKey; !bytes.Equal(got, want) {
			t.Errorf("badger's encryption key %s differs from the derived key", when)
		}
	}
	check("after Create")
	closeStore(t, s)
	s = openStore(t, dir)
	check("after Open")
}

func TestOpenSameProcess(t *testing.T) {
	dir := createClosedStore(t)
	first := openStore(t, dir)

	// flock locks belong to an open file description, so a second Open in
	// the same process conflicts with the first one as well.
	second, err := Open(dir, testPassphrase, nil)
	if err == nil {
		second.Close()
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("second Open in one process: got %v, want ErrInUse", err)
	}
	_, err = Create(dir, testPassphrase, cheapOptions())
	if !errors.Is(err, ErrInUse) {
		t.Errorf("Create on an open store: got %v, want ErrInUse", err)
	}

	closeStore(t, first)
	third, err := Open(dir, testPassphrase, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	closeStore(t, third)
}

// checkModes fails the test unless every directory under dir has mode
// 0700 and every other file has mode 0600.
func checkModes(t *testing.T, dir, when string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if info.Mode() != want {
			t.Errorf("%s: %s has mode %v, want %v", when, path, info.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
}

// checkDirModes fails the test unless every directory under dir has mode
// 0700.
func checkDirModes(t *testing.T, dir, when string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != 0o700 {
			t.Errorf("%s: directory %s has mode %v, want 0700", when, path, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
}

// setUmask sets the process umask for the rest of the test. The umask is
// process-wide, so tests that call it must not run in parallel.
func setUmask(t *testing.T, mask int) {
	t.Helper()
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func TestStoreFileModes(t *testing.T) {
	tests := []struct {
		name     string
		umask    int
		existing bool // create the directory with mode 0755 first
	}{
		{"usual umask", 0o022, false},
		{"permissive umask", 0, false},
		{"permissive umask existing dir", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setUmask(t, tt.umask)
			dir := filepath.Join(t.TempDir(), "store")
			if tt.existing {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Create(dir, testPassphrase, cheapOptions())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			checkModes(t, dir, "after Create")

			// Files badger creates while the store is open get 0666 less the
			// umask, so only the directories are checked until the next Open.
			writeRecords(t, s, 300, 64<<10)
			checkDirModes(t, dir, "after writes")
			closeStore(t, s)
			s = openStore(t, dir)
			checkModes(t, dir, "after Open")
		})
	}
}

// writeRecords puts n records of size bytes in the Issued table, 32 per
// transaction. More than 16 MiB in total makes badger start a second
// value-log file.
func writeRecords(t *testing.T, s *Store, n, size int) {
	t.Helper()
	value := bytes.Repeat([]byte{'v'}, size)
	for first := 0; first < n; first += 32 {
		err := s.Update(func(tx *Tx) error {
			for i := first; i < min(first+32, n); i++ {
				if err := tx.Put(Issued, fmt.Sprintf("%06d", i), value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Put records %d to %d: %v", first, min(first+32, n)-1, err)
		}
	}
}
