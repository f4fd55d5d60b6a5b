package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/skm-p2p/skm/store"
)

// maxPassphraseFile bounds what is read from --passphrase-file.
const maxPassphraseFile = 4 << 10

// passphrase returns the store passphrase from --passphrase-file, then
// $SKM_PASSPHRASE, then a terminal prompt. With confirm set, a prompted
// passphrase is asked twice, as when a store is created.
func (g *globals) passphrase(confirm bool) ([]byte, error) {
	if g.passphraseFile != "" {
		return readPassphraseFile(g.passphraseFile)
	}
	if v, ok := os.LookupEnv("SKM_PASSPHRASE"); ok {
		if v == "" {
			return nil, errors.New("SKM_PASSPHRASE is set but empty: set a passphrase")
		}
		return []byte(v), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errors.New("no passphrase: set SKM_PASSPHRASE or --passphrase-file, or run on a terminal")
	}
	p, err := prompt(fd, "Store passphrase: ")
	if err != nil || !confirm {
		return p, err
	}
	again, err := prompt(fd, "Repeat passphrase: ")
	if err != nil {
		return nil, err
	}
	defer clear(again)
	if !bytes.Equal(p, again) {
		clear(p)
		return nil, errors.New("the passphrases do not match")
	}
	return p, nil
}

func prompt(fd int, label string) ([]byte, error) {
	fmt.Fprint(os.Stderr, label)
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	return p, nil
}

func readPassphraseFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read passphrase file: %w", err)
	}
	defer f.Close()
	p, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile+1))
	if err != nil {
		return nil, fmt.Errorf("read passphrase file %s: %w", path, err)
	}
	if len(p) > maxPassphraseFile {
		return nil, fmt.Errorf("passphrase file %s is larger than %d bytes", path, maxPassphraseFile)
	}
	p = bytes.TrimSuffix(p, []byte("\n"))
	p = bytes.TrimSuffix(p, []byte("\r"))
	if len(p) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return p, nil
}

// openStore opens the existing store in home, asking for the
// passphrase. initHint names the command that creates such a store.
func (g *globals) openStore(home, initHint string) (*store.Store, error) {
	if !store.Exists(home) {
		return nil, fmt.Errorf("no store in %s: run '%s' first, or set --home", home, initHint)
	}
	pass, err := g.passphrase(false)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	st, err := store.Open(home, pass, &store.Options{Logger: slog.Default()})
	return st, explainStoreError(home, err)
}

// explainStoreError adds what to do next to the store's own errors.
func explainStoreError(home string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrWrongPassphrase):
		return fmt.Errorf("wrong passphrase for the store in %s: check SKM_PASSPHRASE or --passphrase-file", home)
	case errors.Is(err, store.ErrInUse):
		return fmt.Errorf("store in use: another skm process has %s open, a daemon or a command still running; wait for it or stop it", home)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%s already has a store: use another --home", home)
	}
	return err
}
