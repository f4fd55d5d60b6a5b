package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Timeouts of the node measurement. Like streamTimeout, they only stop a
// run that hangs.
const (
	sendTimeout    = 30 * time.Second
	sessionTimeout = 30 * time.Second
)

// storeOptions makes stores that open fast. The argon2id cost only
// matters when a store opens, which no measurement includes, and the
// stores hold nothing but bench keys.
var storeOptions = &store.Options{KDF: &store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}}

// probeKey is the record that [Nodes.StoreWrites] overwrites.
const probeKey = "bench-probe"

// Nodes is two running skm nodes, alice and bob, listening on
// 127.0.0.1. Each keeps a real badger store in a temporary directory and
// is enrolled with a CA that serves enrollment and the directory on a
// third host in this process. Close stops them and removes the directory.
type Nodes struct {
	dir        string
	caStore    *store.Store
	caHost     host.Host
	stores     []*store.Store
	alice, bob *node.Node
}

// NewNodes creates the stores under a new directory in tempDir (empty
// means [os.TempDir]), enrolls both nodes, starts them over transport,
// [TCP] or [QUIC], and waits until alice has a session with bob.
func NewNodes(ctx context.Context, transport, tempDir string) (_ *Nodes, err error) {
	listen, err := listenAddr(transport)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempDir, "skm-bench-")
	if err != nil {
		return nil, err
	}

	n := &Nodes{dir: dir}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	passphrase := make([]byte, 32)
	rand.Read(passphrase)
	caAddr, err := n.startCA(passphrase, listen)
	if err != nil {
		return nil, err
	}
	for _, user := range []string{"alice", "bob"} {
		if err := n.enroll(ctx, user, passphrase, caAddr); err != nil {
			return nil, err
		}
	}

	if n.bob, err = node.Start(ctx, n.stores[1], node.Config{Listen: listen}); err != nil {
		return nil, fmt.Errorf("start bob: %w", err)
	}
	cfg := node.Config{Listen: listen, Peers: n.bob.Addrs()}
	if n.alice, err = node.Start(ctx, n.stores[0], cfg); err != nil {
		return nil, fmt.Errorf("start alice: %w", err)
	}
	if err := n.waitSession(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// startCA creates an open CA and serves it on a loopback host. It
// returns the address that nodes enroll at.
func (n *Nodes) startCA(passphrase []byte, listen []ma.Multiaddr) (ma.Multiaddr, error) {
	var err error
	if n.caStore, err = store.Create(filepath.Join(n.dir, "ca"), passphrase, storeOptions); err != nil {
		return nil, err
	}
	a, err := ca.Init(n.caStore, "skm bench CA", ca.Config{Open: true})
	if err != nil {
		return nil, err
	}
	if n.caHost, err = node.NewHost(node.HostConfig{Key: a.PeerKey(), Listen: listen}); err != nil {
		return nil, err
	}
	n.caHost.SetStreamHandler(protocol.EnrollID, a.HandleEnroll)
	n.caHost.SetStreamHandler(protocol.DirectoryID, a.HandleDirectory)
	addrs := node.FullAddrs(n.caHost)
	if len(addrs) == 0 {
		return nil, errors.New("the bench CA host has no listen address")
	}
	return addrs[0], nil
}

// enroll creates user's store and node identity and enrolls it at the
// CA.
func (n *Nodes) enroll(ctx context.Context, user string, passphrase []byte, caAddr ma.Multiaddr) error {
	st, err := store.Create(filepath.Join(n.dir, user), passphrase, storeOptions)
	if err != nil {
		return err
	}
	n.stores = append(n.stores, st)
	if _, err := node.Init(st, user); err != nil {
		return err
	}
	if _, err := node.Enroll(ctx, st, node.EnrollConfig{CA: caAddr}); err != nil {
		return fmt.Errorf("enroll %s: %w", user, err)
	}
	return nil
}

// waitSession polls until alice lists bob as a contact with a session.
func (n *Nodes) waitSession(ctx context.Context) error {
	deadline := time.Now().Add(sessionTimeout)
	for time.Now().Before(deadline) {
		peers, err := n.alice.Peers()
		if err != nil {
			return err
		}
		for _, p := range peers {
			if p.User == "bob" && p.Session != "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("alice has no session with bob after %v", sessionTimeout)
}

// Sends sends count messages of size bytes from alice to bob with
// [node.Node.Send], one at a time, and returns the time from each call
// to its return with bob's acknowledgement.
func (n *Nodes) Sends(ctx context.Context, size, count int) ([]time.Duration, error) {
	text := strings.Repeat("x", size)
	samples := make([]time.Duration, 0, count)
	for i := range count {
		sendCtx, cancel := context.WithTimeout(ctx, sendTimeout)
		start := time.Now()
		res, err := n.alice.Send(sendCtx, "bob", text)
		elapsed := time.Since(start)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("send %d: %w", i+1, err)
		}
		if !res.Delivered {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("message %d not acknowledged within %v", i+1, sendTimeout)
		}
		samples = append(samples, elapsed)
	}
	return samples, nil
}

// StoreWrites writes a record of size bytes to alice's store count
// times, each in its own synced transaction, and returns the time of
// each write. A Send waits for three such writes: the message queued at
// alice, stored at bob, and marked delivered at alice.
func (n *Nodes) StoreWrites(size, count int) ([]time.Duration, error) {
	value := make([]byte, size)
	samples := make([]time.Duration, 0, count)
	for i := range count {
		start := time.Now()
		if err := n.stores[0].Put(store.Meta, probeKey, value); err != nil {
			return nil, fmt.Errorf("store write %d: %w", i+1, err)
		}
		samples = append(samples, time.Since(start))
	}
	return samples, nil
}

// Close stops the nodes and the CA and removes their stores.
func (n *Nodes) Close() error {
	var errs []error
	for _, nd := range []*node.Node{n.alice, n.bob} {
		if nd != nil {
			errs = append(errs, nd.Close())
		}
	}
	if n.caHost != nil {
		errs = append(errs, n.caHost.Close())
	}
	for _, st := range append(n.stores, n.caStore) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	errs = append(errs, os.RemoveAll(n.dir))
	return errors.Join(errs...)
}
