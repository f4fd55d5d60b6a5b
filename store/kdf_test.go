package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// validKDFFile returns the kdf.json of a new cheap store, decoded into a
// map so that a test can change one field at a time, and the directory of
// that store.
func validKDFFile(t *testing.T) (string, map[string]any) {
	t.Helper()
	dir := createClosedStore(t)
	data, err := os.ReadFile(filepath.Join(dir, kdfFile))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatalf("decode kdf.json written by Create: %v", err)
	}
	return dir, fields
}

// kdfFileWith returns the encoding of fields with the given fields
// replaced. A nil value removes the field.
func kdfFileWith(t *testing.T, fields map[string]any, changes map[string]any) []byte {
	t.Helper()
	out := make(map[string]any, len(fields))
	for k, v := range fields {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	data, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestOpenDamagedKDFFile(t *testing.T) {
	shortSalt := bytes.Repeat([]byte{1}, saltSize-1)
	longSalt := bytes.Repeat([]byte{1}, saltSize+1)
	shortCheck := bytes.Repeat([]byte{2}, 31)

	tests := []struct {
		name    string
		changes map[string]any
		// content, when set, is written in place of the changed fields.
		content func(t *testing.T, valid []byte) []byte
		// install, when set, puts a non-regular file at path instead.
		install func(t *testing.T, path string)
		want    string // part of the error message
	}{
		{name: "memory max uint32", changes: map[string]any{"memory_kib": uint32(1<<32 - 1)},
			want: "memory"},
		{name: "memory above limit", changes: map[string]any{"memory_kib": maxKDFMemoryKiB + 1},
			want: "memory"},
		{name: "memory beyond uint32", changes: map[string]any{"memory_kib": int64(1) << 40},
			want: "parse"},
		{name: "memory negative", changes: map[string]any{"memory_kib": -1}, want: "parse"},
		{name: "memory below threads", changes: map[string]any{"memory_kib": 8, "threads": 4},
			want: "memory"},
		{name: "time zero", changes: map[string]any{"time": 0}, want: "time"},
		{name: "time missing", changes: map[string]any{"time": nil}, want: "time"},
		{name: "time above limit", changes: map[string]any{"time": maxKDFTime + 1}, want: "time"},
		{name: "time max uint32", changes: map[string]any{"time": uint32(1<<32 - 1)}, want: "time"},
		{name: "threads zero", changes: map[string]any{"threads": 0}, want: "threads"},
		{name: "threads beyond uint8", changes: map[string]any{"threads": 300}, want: "parse"},
		{name: "wrong algorithm", changes: map[string]any{"algorithm": "scrypt"},
			want: "algorithm"},
		{name: "argon2i algorithm", changes: map[string]any{"algorithm": "argon2i"},
			want: "algorithm"},
		{name: "algorithm missing", changes: map[string]any{"algorithm": nil}, want: "algorithm"},
		{name: "salt too short", changes: map[string]any{"salt": shortSalt}, want: "salt"},
		{name: "salt too long", changes: map[string]any{"salt": longSalt}, want: "salt"},
		{name: "salt missing", changes: map[string]any{"salt": nil}, want: "salt"},
		{name: "salt not base64", changes: map[string]any{"salt": "!!"}, want: "parse"},
		{name: "check too short", changes: map[string]any{"check": shortCheck}, want: "check"},
		{name: "check missing", changes: map[string]any{"check": nil}, want: "check"},
		{name: "file above 4 KiB", content: func(t *testing.T, valid []byte) []byte {
			// Valid JSON, so only the size limit can reject it.
			padding := bytes.Repeat([]byte{' '}, maxKDFFileSize+1-len(valid))
			return append(padding, valid...)
		}, want: "larger than"},
		{name: "invalid JSON", content: func(t *testing.T, valid []byte) []byte {
			return valid[:len(valid)/2]
		}, want: "parse"},
		{name: "empty file", content: func(t *testing.T, valid []byte) []byte {
			return nil
		}, want: "parse"},
		{name: "JSON null", content: func(t *testing.T, valid []byte) []byte {
			return []byte("null")
		}, want: "algorithm"},
		{name: "JSON array", content: func(t *testing.T, valid []byte) []byte {
			return []byte("[1, 2, 3]")
		}, want: "parse"},
		{name: "kdf.json is a directory", install: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, want: "regular file"},
		{name: "kdf.json is a FIFO", install: func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: "regular file"},
		{name: "kdf.json links to /dev/zero", install: func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}, want: "regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, fields := validKDFFile(t)
			path := filepath.Join(dir, kdfFile)
			valid, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.install != nil:
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				tt.install(t, path)
			case tt.content != nil:
				if err := os.WriteFile(path, tt.content(t, valid), 0o600); err != nil {
					t.Fatal(err)
				}
			default:
				data := kdfFileWith(t, fields, tt.changes)
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}

			before := snapshotDir(t, dir)
			var stats runtime.MemStats
			runtime.ReadMemStats(&stats)
			allocated := stats.TotalAlloc
			s, err := Open(dir, testPassphrase, nil)
			runtime.ReadMemStats(&stats)
			allocated = stats.TotalAlloc - allocated
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}

			if errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("Open: got %v, want an error other than ErrWrongPassphrase", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: got %q, want an error that mentions %q", err, tt.want)
			}
			// Running argon2id on any rejected setting would allocate at
			// least its memory cost, which is far above this bound.
			if allocated > 1<<20 {
				t.Errorf("Open allocated %d bytes before it failed, want at most 1 MiB", allocated)
			}
			compareSnapshots(t, before, snapshotDir(t, dir))
		})
	}
}

// FuzzReadKDFFile writes arbitrary bytes as kdf.json and opens the store.
// Open must return an error or a working store, and never panic.
func FuzzReadKDFFile(f *testing.F) {
	seedDir := f.TempDir()
	key, err := newKDFFile(seedDir, cheapKDF, testPassphrase)
	if err != nil {
		f.Fatal(err)
	}
	clear(key)
	valid, err := os.ReadFile(filepath.Join(seedDir, kdfFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(bytes.Replace(valid, []byte(`"argon2id"`), []byte(`"argon2i"`), 1))
	f.Add(bytes.Replace(valid, []byte(`"memory_kib": 64`), []byte(`"memory_kib": 4294967295`), 1))
	f.Add(bytes.Replace(valid, []byte(`"time": 1`), []byte(`"time": 0`), 1))
	f.Add(valid[:len(valid)-2])
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		// Settings that the file bounds accept but that cost more than
		// the seeds would make each run slow without reaching new code.
		var kf kdfFileV1
		if json.Unmarshal(data, &kf) == nil && kf.validate() == nil &&
			(kf.MemoryKiB > 1<<10 || kf.Time > 2) {
			t.Skip("costly but valid argon2id settings")
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, kdfFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, testPassphrase, nil)
		if err != nil {
			return
		}
		if err := s.Put(Meta, "fuzz", data); err != nil {
			t.Errorf("Put after a successful Open: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close after a successful Open: %v", err)
		}
	})
}
