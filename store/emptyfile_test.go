package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenAfterCrashLeftEmptyFile reopens a store whose badger directory
// has an empty memtable or value log file, as a process killed between
// creating and sizing that file leaves it.
func TestOpenAfterCrashLeftEmptyFile(t *testing.T) {
	for _, name := range []string{"00009.mem", "000002.vlog"} {
		t.Run("empty "+name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s, err := Create(dir, testPassphrase, cheapOptions())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if err := s.Put(Meta, "before", []byte("crash")); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := os.WriteFile(filepath.Join(dir, dataDir, name), nil, 0o600); err != nil {
				t.Fatal(err)
			}

			s = openStore(t, dir)
			got, err := s.Get(Meta, "before")
			if err != nil {
				t.Fatalf("Get after reopen: %v", err)
			}
			if !bytes.Equal(got, []byte("crash")) {
				t.Errorf("Get after reopen: got %q, want %q", got, "crash")
			}
			if err := s.Put(Meta, "after", []byte("reopen")); err != nil {
				t.Errorf("Put after reopen: %v", err)
			}
		})
	}
}
