package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/store"
)

// secretForms returns the encodings in which a secret could leak.
func secretForms(secret []byte) map[string][]byte {
	return map[string][]byte{
		"raw":       secret,
		"hex":       []byte(hex.EncodeToString(secret)),
		"HEX":       []byte(strings.ToUpper(hex.EncodeToString(secret))),
		"base64":    []byte(base64.StdEncoding.EncodeToString(secret)),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(secret)),
	}
}

func TestSecretsNeverInClear(t *testing.T) {
	e := newEnv(t)
	passphrase := strings.TrimPrefix(e.vars[2], "SKM_PASSPHRASE=")
	caHome, ca := e.startCA("--log-level", "debug")
	alice := e.enroll(caHome, ca.addrs[0], "alice")
	bob := e.enroll(caHome, ca.addrs[0], "bob")
	aliceNode := e.startNode(alice, "--log-level", "debug")
	bobNode := e.startNode(bob, "--peer", aliceNode.addrs[0], "--log-level", "debug")
	waitFor(t, 20*time.Second, "bob's session with alice", func() bool {
		return strings.Contains(bobNode.stderr.String(), "session established")
	})
	var outputs strings.Builder
	for _, args := range [][]string{
		{"send", "bob", "a secret message", "--home", alice},
		{"send", "alice", "another one", "--home", bob},
		{"rotate", "--home", alice},
		{"send", "bob", "after rotation", "--home", alice, "--wait", "10s"},
		{"whoami", "--json", "--home", alice},
		{"cert", "--json", "--home", bob},
		{"peers", "--json", "--home", bob},
		{"ca", "list", "--json", "--home", caHome},
		{"ca", "crl", "--pem", "--home", caHome},
	} {
		r := e.run(args...)
		outputs.WriteString(r.stdout + r.stderr)
	}
	for _, d := range []*daemon{aliceNode, bobNode, ca} {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
	}
	logs := []byte(aliceNode.stderr.String() + bobNode.stderr.String() + ca.stderr.String() + outputs.String())
	if !bytes.Contains(logs, []byte("level=DEBUG")) {
		t.Fatal("no debug lines were logged; the test would prove nothing")
	}

	secrets := map[string][]byte{"passphrase": []byte(passphrase)}
	for _, home := range []string{alice, bob} {
		st, err := store.Open(home, []byte(passphrase), nil)
		if err != nil {
			t.Fatal(err)
		}
		id, err := node.LoadIdentity(st)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := crypto.MarshalPrivateKey(id.PeerKey)
		if err != nil {
			t.Fatal(err)
		}
		secrets[home+" signing key"] = id.SigningKey.Seed()
		secrets[home+" libp2p key"] = raw
		st.Close()
	}
	st, err := store.Open(caHome, []byte(passphrase), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca", "peer"} {
		key, err := st.Get(store.Keys, name)
		if err != nil {
			t.Fatal(err)
		}
		secrets["CA key "+name] = key
	}
	st.Close()

	// Every file the homes hold, encrypted store included.
	files := map[string][]byte{"logs and command output": logs}
	for _, home := range []string{alice, bob, caHome} {
		filepath.WalkDir(home, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&os.ModeSocket != 0 {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("read %s: %v", path, err)
				return nil
			}
			files[path] = data
			return nil
		})
	}
	for name, secret := range secrets {
		for form, pattern := range secretForms(secret) {
			for where, data := range files {
				if bytes.Contains(data, pattern) {
					t.Errorf("%s (%s) appears in %s", name, form, where)
				}
			}
		}
	}
	// A message's text is no secret from its own users, who read it with
	// skm history, but no daemon may log it.
	if strings.Contains(aliceNode.stderr.String()+bobNode.stderr.String(), "a secret message") {
		t.Error("a message text appears in a daemon log")
	}
}
