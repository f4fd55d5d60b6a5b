package store

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sys/unix"
)

// KDFParams are the argon2id parameters that turn a passphrase into the
// store's encryption key.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF is the second recommended argon2id setting of RFC 9106
// (t=3, m=64 MiB), with two lanes.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// Bounds on parameters read from kdf.json, so that a damaged or hostile
// file cannot make Open allocate gigabytes or spin for hours.
const (
	maxKDFMemoryKiB = 1 << 20 // 1 GiB
	maxKDFTime      = 16
	maxKDFFileSize  = 4 << 10
	saltSize        = 16
	keySize         = 32 // AES-256 for badger
)

// checkLabel is the message MACed with the second half of the derived key.
// kdf.json stores the MAC, which lets Open reject a wrong passphrase
// without exposing the encryption key.
const checkLabel = "skm store passphrase check v1"

type kdfFileV1 struct {
	Algorithm string `json:"algorithm"`
	KDFParams
	Salt  []byte `json:"salt"`
	Check []byte `json:"check"`
}

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > maxKDFTime {
		return fmt.Errorf("argon2id time %d outside 1..%d", p.Time, maxKDFTime)
	}
	if p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB {
		return fmt.Errorf("argon2id memory %d KiB outside %d..%d",
			p.MemoryKiB, 8*uint32(p.Threads), maxKDFMemoryKiB)
	}
	if p.Threads < 1 {
		return fmt.Errorf("argon2id threads must be at least 1")
	}
	return nil
}

// derive returns the store key and the passphrase check value.
func (p KDFParams) derive(passphrase, salt []byte) (key, check []byte) {
	out := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, 2*keySize)
	// argon2 leaves its work area (64 MiB by default) to the garbage
	// collector, which would keep it resident in a long-running daemon.
	// Return it to the OS now, once per open.
	debug.FreeOSMemory()
	mac := hmac.New(sha256.New, out[keySize:])
	mac.Write([]byte(checkLabel))
	check = mac.Sum(nil)
	key = make([]byte, keySize)
	copy(key, out[:keySize])
	clear(out)
	return key, check
}

func newKDFFile(dir string, params KDFParams, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("empty passphrase: set one of at least 1 character")
	}
	if err := params.validate(); err != nil {
		return nil, err
	}
	salt := make([]byte, saltSize)
	if _, err := io.ReadFull(rand.Reader, salt); err != nil {
		return nil, fmt.Errorf("generate salt: %w", err)
	}
	key, check := params.derive(passphrase, salt)
	data, err := json.MarshalIndent(kdfFileV1{
		Algorithm: "argon2id",
		KDFParams: params,
		Salt:      salt,
		Check:     check,
	}, "", "  ")
	if err != nil {
		clear(key)
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, kdfFile), data); err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}

func readKDFFile(dir string, passphrase []byte) ([]byte, error) {
	path := filepath.Join(dir, kdfFile)
	// O_NONBLOCK keeps a FIFO at path from blocking the open call, and the
	// check below then rejects it like any other non-regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read key-derivation file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: the store is damaged", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKDFFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKDFFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: the file is damaged", path, maxKDFFileSize)
	}
	var kf kdfFileV1
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if kf.Algorithm != "argon2id" {
		return nil, fmt.Errorf("%s: unsupported algorithm %q", path, kf.Algorithm)
	}
	if err := kf.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(kf.Salt) != saltSize || len(kf.Check) != sha256.Size {
		return nil, fmt.Errorf("%s: salt or check value has the wrong length", path)
	}
	key, check := kf.derive(passphrase, kf.Salt)
	if !hmac.Equal(check, kf.Check) {
		clear(key)
		return nil, fmt.Errorf("%q: %w", dir, ErrWrongPassphrase)
	}
	return key, nil
}

// writeFileAtomic writes data to path with mode 0600 through a synced
// temporary file and a rename, so a crash leaves either no file or the
// whole file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
