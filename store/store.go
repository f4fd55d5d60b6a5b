// Package store keeps a node's or a CA's records in an embedded badger
// database that is encrypted at rest.
//
// A store lives in one directory:
//
//	kdf.json   key-derivation parameters, salt and passphrase check value
//	lock       advisory lock held by the process that has the store open
//	data/      the badger database, encrypted with AES-256
//
// The badger encryption key is derived from the user's passphrase with
// argon2id. The derived key is never written to disk, and a wrong
// passphrase is detected from kdf.json before badger opens anything.
//
// Records are grouped in tables: a table is a key prefix, and every table
// the project uses is a [Table] constant of this package.
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Errors returned by [Create], [Open] and the record accessors.
var (
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("record not found")
	// ErrExists is returned by [Create] for a directory that already has a
	// store, and by [Tx.Insert] for a key that is already taken.
	ErrExists = errors.New("already exists")
	// ErrNoStore is returned by [Open] for a directory without a store.
	ErrNoStore = errors.New("no store")
	// ErrInUse is returned when another process has the store open.
	ErrInUse = errors.New("store in use by another process")
	// ErrWrongPassphrase is returned when the passphrase does not match the
	// one the store was created with.
	ErrWrongPassphrase = errors.New("wrong passphrase")
)

const (
	kdfFile  = "kdf.json"
	lockFile = "lock"
	dataDir  = "data"
)

// Store is an open, encrypted record store. Its methods are safe for
// concurrent use.
type Store struct {
	dir  string
	db   *badger.DB
	lock *os.File
	// key is the badger encryption key. badger encrypts every new data
	// key with this slice while the database is open, so Close clears it
	// only after badger has closed.
	key []byte
}

// Options tunes a store. The zero value is the right choice outside tests.
type Options struct {
	// KDF sets the key-derivation cost for [Create]. Nil means
	// [DefaultKDF]. [Open] always uses the parameters saved in kdf.json.
	KDF *KDFParams
	// Logger receives badger's warnings and errors. Nil discards them.
	Logger *slog.Logger
}

// Exists reports whether dir contains a store.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, kdfFile))
	return err == nil
}

// Create makes a new store in dir, creating dir with mode 0700 if needed,
// and returns it open. It returns [ErrExists] if dir already has a store.
func Create(dir string, passphrase []byte, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	lock, err := acquireLock(dir)
	if err != nil {
		return nil, err
	}
	if Exists(dir) {
		lock.Close()
		return nil, fmt.Errorf("store at %q: %w", dir, ErrExists)
	}
	params := DefaultKDF
	if opts.KDF != nil {
		params = *opts.KDF
	}
	key, err := newKDFFile(dir, params, passphrase)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return openData(dir, lock, key, opts)
}

// Open opens the existing store in dir. It returns [ErrNoStore] if there is
// none, [ErrInUse] if another process has it open, and
// [ErrWrongPassphrase] if passphrase is not the store's passphrase. A
// passphrase that fails the check in kdf.json is rejected before badger
// opens anything, so it changes nothing in dir except creating a missing
// lock file.
func Open(dir string, passphrase []byte, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	if !Exists(dir) {
		return nil, fmt.Errorf("%q: %w", dir, ErrNoStore)
	}
	lock, err := acquireLock(dir)
	if err != nil {
		return nil, err
	}
	key, err := readKDFFile(dir, passphrase)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return openData(dir, lock, key, opts)
}

// acquireLock takes an exclusive, non-blocking flock on dir/lock. The
// kernel drops the lock when the process exits, so a killed process never
// leaves the store locked.
func acquireLock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%q: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("lock store %q: %w", dir, err)
	}
	return f, nil
}

func openData(dir string, lock *os.File, key []byte, opts *Options) (*Store, error) {
	if err := removeEmptyLogFiles(filepath.Join(dir, dataDir)); err != nil {
		clear(key)
		lock.Close()
		return nil, err
	}
	db, err := badger.Open(badgerOptions(filepath.Join(dir, dataDir), key, opts.Logger))
	if err != nil {
		clear(key)
		lock.Close()
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return nil, fmt.Errorf("%q: %w", dir, ErrWrongPassphrase)
		}
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	// badger creates its pid file with mode 0666 less the umask. Nothing in
	// the store is meant for other users, so tighten whatever it made.
	// NOTE: files badger creates while the store is open (value logs,
	// memtables, tables) also get 0666 less the umask until the next Open.
	// Only the 0700 directories keep other users out of them.
	if err := restrictModes(dir); err != nil {
		db.Close()
		clear(key)
		lock.Close()
		return nil, err
	}
	return &Store{dir: dir, db: db, lock: lock, key: key}, nil
}

// removeEmptyLogFiles deletes zero-byte memtable (.mem) and value log
// (.vlog) files in badger's directory. badger creates each such file
// empty and then sizes it and writes its header, so a process killed in
// between leaves an empty file, on which badger v4.9.6 fails every Open
// with "Create a new file". An empty file holds no record.
func removeEmptyLogFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read store data directory: %w", err)
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if !e.Type().IsRegular() || (ext != ".mem" && ext != ".vlog") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove empty file left by a crash: %w", err)
		}
	}
	return nil
}

// badgerOptions sizes badger for a small daemon that writes little: two
// 4 MiB memtables, small caches and 16 MiB value-log files keep an idle
// process far below the defaults' hundreds of megabytes. Writes are synced
// so that an acknowledged record survives kill -9.
func badgerOptions(path string, key []byte, logger *slog.Logger) badger.Options {
	return badger.DefaultOptions(path).
		WithEncryptionKey(key).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithValueThreshold(1 << 10).
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(8 << 20).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(2 << 20).
		WithNumCompactors(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithMetricsEnabled(false).
		WithLogger(newBadgerLogger(logger))
}

// restrictModes runs while badger is open. badger's background work can
// delete files during the walk, for example the .mem file of a memtable
// replayed after a crash, so a file that is gone is skipped.
func restrictModes(dir string) error {
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		}
		info, err := d.Info()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if info.Mode().Perm()&^mode == 0 {
			return nil
		}
		if err := os.Chmod(path, mode); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// Dir returns the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

// Close flushes and closes the database and releases the lock.
func (s *Store) Close() error {
	err := s.db.Close()
	clear(s.key)
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}
