package node

import (
	"encoding/hex"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/protocol"
)

// Retry timing of delivery and of --peer dials.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
	// recheckInterval is how often a worker with unacknowledged messages
	// looks again even when nothing wakes it.
	recheckInterval = 10 * time.Second
)

// worker delivers one user's outbox in order. It sleeps until woken by a
// new message, an acknowledgement, a new session or its retry timer.
type worker struct {
	user string
	wake chan struct{}
}

// wakeWorker starts or wakes the delivery worker for user.
func (n *Node) wakeWorker(user string) {
	n.mu.Lock()
	w, ok := n.workers[user]
	if !ok && n.ctx.Err() == nil {
		w = &worker{user: user, wake: make(chan struct{}, 1)}
		n.workers[user] = w
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.runWorker(w)
		}()
	}
	n.mu.Unlock()
	if w != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (n *Node) runWorker(w *worker) {
	backoff := minBackoff
	for {
		wait := recheckInterval
		err := n.deliver(w.user)
		switch {
		case errors.Is(err, errOutboxEmpty):
			wait = time.Hour
		case err != nil:
			n.log.Debug("delivery failed, will retry", "user", w.user, "in", backoff, "err", err)
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		default:
			backoff = minBackoff
		}
		timer := time.NewTimer(wait)
		select {
		case <-n.ctx.Done():
			timer.Stop()
			return
		case <-w.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

var errOutboxEmpty = errors.New("outbox empty")

// deliver writes every queued message for user that the current session
// has not carried yet, oldest first.
func (n *Node) deliver(user string) error {
	n.mu.Lock()
	start := n.outboxStart[user]
	n.mu.Unlock()
	pending, first, err := pendingMessages(n.st, user, start)
	if err != nil {
		return err
	}
	if first != "" {
		n.mu.Lock()
		n.outboxStart[user] = first
		n.mu.Unlock()
	}
	if len(pending) == 0 {
		return errOutboxEmpty
	}
	c, err := getContact(n.st, user)
	if err != nil {
		return err
	}
	s, err := n.connect(n.ctx, c.PeerID, c.multiaddrs())
	if err != nil && n.lookupDue(user) {
		// The stored addresses failed: the user may have moved, or
		// rotated to a new peer. Ask the CA directory, then try again.
		if fresh, lerr := n.lookupUser(n.ctx, user); lerr == nil {
			s, err = n.connect(n.ctx, fresh.PeerID, fresh.multiaddrs())
		}
	}
	if err != nil {
		return err
	}
	for _, m := range pending {
		if s.markSent(m.ID) {
			continue
		}
		body, err := encodeData(m)
		if err != nil {
			return err
		}
		if err := s.write(protocol.FrameData, body); err != nil {
			s.stream.Reset()
			return err
		}
	}
	return nil
}

// lookupDue reports whether user may be looked up in the CA directory
// now, and if so records the lookup.
func (n *Node) lookupDue(user string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if now.Sub(n.lastLookup[user]) < lookupInterval {
		return false
	}
	n.lastLookup[user] = now
	return true
}

// onConnected wakes the workers of a peer that just connected, so queued
// messages go out at once instead of at the next retry.
func (n *Node) onConnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	contacts, err := listContacts(n.st)
	if err != nil {
		return
	}
	for _, ct := range contacts {
		if ct.PeerID == p {
			n.wakeWorker(ct.User)
		}
	}
}

// goDialPeer connects to a configured peer in the background, retrying
// with backoff until a session is up or the node stops.
func (n *Node) goDialPeer(addr ma.Multiaddr) {
	info, err := peer.AddrInfoFromP2pAddr(addr)
	if err != nil {
		n.log.Error("invalid peer address: it must end in /p2p/<peer ID>", "addr", addr.String(), "err", err)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		backoff := minBackoff
		for {
			_, err := n.connect(n.ctx, info.ID, info.Addrs)
			if err == nil || n.ctx.Err() != nil {
				return
			}
			n.log.Debug("dial peer failed, will retry", "peer", info.ID.String(), "in", backoff, "err", err)
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}()
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func hexID(id string) ([]byte, error) {
	return hex.DecodeString(id)
}
