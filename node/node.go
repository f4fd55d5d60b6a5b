package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// MaxTextSize is the largest message text in bytes: a data frame's
// plaintext limit less the message ID and send time.
const MaxTextSize = protocol.MaxPlaintext - dataHeaderSize

// Config configures a running node.
type Config struct {
	// Listen lists the addresses to listen on. None means the node only
	// dials out, as the CLI does when no daemon runs.
	Listen []ma.Multiaddr
	// Peers are dialed at start, and again with backoff until a session
	// is up, so their users become contacts.
	Peers []ma.Multiaddr
	// Deliver starts delivery of every queued message at start. Without
	// it, delivery runs only for users that Send is called for.
	Deliver bool
	// Renew rotates the key when two thirds of the certificate's
	// lifetime have passed, as a long-running daemon should.
	Renew bool
	// MDNS announces the node on its local networks and connects to the
	// nodes of the same CA that announce themselves there.
	MDNS bool
	// DHT, Relays, RelayService and ForcePrivate configure the host's
	// routing beyond the LAN, as in [HostConfig]. The DHT starts from
	// Peers and the CA.
	DHT          bool
	Relays       []ma.Multiaddr
	RelayService bool
	ForcePrivate bool
	// Log receives the node's log lines. Nil discards them.
	Log *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// HandshakeTimeout bounds each read and write of a session handshake,
	// so a peer that stops mid-handshake is dropped. Zero means 10s.
	HandshakeTimeout time.Duration
}

// Node is a running skm node: a libp2p host that authenticates peers
// with their certificates and exchanges encrypted messages with them.
type Node struct {
	st *store.Store
	// id is the current identity. Rotation replaces it whole, so a
	// reader's copy stays consistent.
	id  atomic.Pointer[Identity]
	h   host.Host
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	sessions    map[peer.ID][]*session
	workers     map[string]*worker
	subscribers map[chan Event]struct{}
	ackWaiters  map[string][]chan struct{}
	lastLookup  map[string]time.Time

	// rev holds the newest CRL and exchanges it with peers.
	rev *Revocations
	// rotateMu serializes key rotations.
	rotateMu sync.Mutex
	// mdns is the running mDNS service, or nil.
	mdns io.Closer
	// dialing holds the peers found by mDNS that a dial is under way to.
	dialing map[peer.ID]bool
	// outboxStart holds, per user, the key of the oldest message that
	// was pending at the last delivery, where the next outbox scan
	// starts.
	outboxStart map[string]string
	// mdnsPeers holds every peer mDNS found, with its addresses, to dial
	// again when its session is lost.
	mdnsPeers map[peer.ID]peer.AddrInfo
	// handshakes and frames bound how fast one peer may start sessions
	// and send frames.
	handshakes *peerLimiter
	frames     *peerLimiter
}

// Event is a change a local client can watch for.
type Event struct {
	// Type is "received" for an incoming message and "delivered" when a
	// sent message is acknowledged.
	Type    string   `json:"type"`
	Message *Message `json:"message"`
}

// Start runs a node on the identity in st. The node must be enrolled.
func Start(ctx context.Context, st *store.Store, cfg Config) (*Node, error) {
	id, err := LoadIdentity(st)
	if err != nil {
		return nil, err
	}
	if id.Cert == nil {
		return nil, ErrNotEnrolled
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	hc, err := hostConfig(st, id, cfg)
	if err != nil {
		return nil, err
	}
	h, err := NewHost(hc)
	if err != nil {
		return nil, err
	}
	n := &Node{
		st:          st,
		h:           h,
		cfg:         cfg,
		log:         cfg.Log,
		sessions:    map[peer.ID][]*session{},
		workers:     map[string]*worker{},
		subscribers: map[chan Event]struct{}{},
		ackWaiters:  map[string][]chan struct{}{},
		lastLookup:  map[string]time.Time{},
		dialing:     map[peer.ID]bool{},
		mdnsPeers:   map[peer.ID]peer.AddrInfo{},
		outboxStart: map[string]string{},
		handshakes:  newPeerLimiter(handshakeRate, handshakeBurst),
		frames:      newPeerLimiter(frameRate, frameBurst),
	}
	n.id.Store(id)
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := n.startRevocations(); err != nil {
		h.Close()
		return nil, err
	}
	h.SetStreamHandler(protocol.SessionID, n.handleSession)
	h.Network().Notify(&network.NotifyBundle{ConnectedF: n.onConnected})
	for _, addr := range cfg.Peers {
		n.goDialPeer(addr)
	}
	if len(cfg.Listen) > 0 {
		n.wg.Add(1)
		go n.announceLoop()
	}
	if cfg.Renew {
		n.wg.Add(1)
		go n.renewLoop()
	}
	if cfg.MDNS {
		m, err := StartMDNS(h, MDNSServiceName(id.CACert), n.onMDNSPeer)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.mdns = m
		n.wg.Add(1)
		go n.mdnsRedialLoop()
	}
	if cfg.Deliver {
		users, err := outboxUsers(st)
		if err != nil {
			n.Close()
			return nil, err
		}
		for _, u := range users {
			n.wakeWorker(u)
		}
	}
	return n, nil
}

// hostConfig turns a node's settings into its host's.
func hostConfig(st *store.Store, id *Identity, cfg Config) (HostConfig, error) {
	hc := HostConfig{
		Key:          id.PeerKey,
		Listen:       cfg.Listen,
		DHT:          cfg.DHT,
		RelayService: cfg.RelayService,
		ForcePrivate: cfg.ForcePrivate,
	}
	relays, err := peer.AddrInfosFromP2pAddrs(cfg.Relays...)
	if err != nil {
		return hc, fmt.Errorf("invalid relay address: it must end in /p2p/<peer ID>: %w", err)
	}
	hc.Relays = relays
	if cfg.DHT {
		if hc.DHTBootstrap, err = peer.AddrInfosFromP2pAddrs(cfg.Peers...); err != nil {
			return hc, fmt.Errorf("invalid peer address: %w", err)
		}
		if ca, err := caPeerFromStore(st); err == nil {
			hc.DHTBootstrap = append(hc.DHTBootstrap, *ca)
		}
	}
	return hc, nil
}

// Close stops the node's workers, closes its sessions and its host. It
// does not close the store.
func (n *Node) Close() error {
	n.cancel()
	if n.mdns != nil {
		n.mdns.Close()
	}
	n.h.RemoveStreamHandler(protocol.SessionID)
	n.mu.Lock()
	for _, list := range n.sessions {
		for _, s := range list {
			s.stream.Reset()
		}
	}
	n.mu.Unlock()
	if n.rev != nil {
		n.rev.Close()
	}
	err := n.h.Close()
	n.wg.Wait()
	return err
}

// goTracked runs fn in a goroutine that Close waits for, unless the node
// is closing. The check and wg.Add happen under n.mu, which Close takes
// after cancelling, so no goroutine starts once Close waits.
func (n *Node) goTracked(fn func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn()
	}()
	return true
}

// Identity returns the node's identity.
func (n *Node) Identity() *Identity { return n.id.Load() }

// Host returns the node's libp2p host.
func (n *Node) Host() host.Host { return n.h }

// Addrs returns the node's listen addresses with its /p2p/ peer ID.
func (n *Node) Addrs() []ma.Multiaddr { return FullAddrs(n.h) }

// SendResult is the outcome of [Node.Send].
type SendResult struct {
	Message *Message `json:"message"`
	// Delivered reports whether the recipient acknowledged the message
	// before Send returned. If not, the message stays queued and is
	// delivered when the recipient can be reached.
	Delivered bool `json:"delivered"`
}

// ErrInvalidMessage is returned by Send for text that cannot be sent.
var ErrInvalidMessage = errors.New("invalid message")

// Send queues text for user and waits until ctx ends for the
// recipient's acknowledgement. The message is in the store, and will be
// delivered exactly once, as soon as Send has returned without error.
func (n *Node) Send(ctx context.Context, user, text string) (*SendResult, error) {
	switch {
	case user == n.Identity().User:
		return nil, fmt.Errorf("%w: cannot send a message to yourself (%s)", ErrInvalidMessage, user)
	case text == "":
		return nil, fmt.Errorf("%w: empty text", ErrInvalidMessage)
	case len(text) > MaxTextSize:
		return nil, fmt.Errorf("%w: text of %d bytes exceeds the limit of %d", ErrInvalidMessage, len(text), MaxTextSize)
	case !utf8.ValidString(text):
		return nil, fmt.Errorf("%w: text is not valid UTF-8", ErrInvalidMessage)
	}
	c, err := getContact(n.st, user)
	if errors.Is(err, ErrUnknownUser) {
		// The lookup gets its own deadline: a caller that does not wait
		// for delivery still needs the contact to queue the message.
		if c, err = n.lookupUser(context.WithoutCancel(ctx), user); err != nil {
			return nil, fmt.Errorf("%w %q: no contact, and the CA directory lookup failed: %v", ErrUnknownUser, user, err)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := n.checkRevoked(n.Identity().Cert); err != nil {
		return nil, fmt.Errorf("%w: your own %w: ask the CA operator for a token and run skm rotate --token TOKEN", ErrInvalidMessage, err)
	}
	if err := n.checkContact(ctx, c); err != nil {
		return nil, fmt.Errorf("%w: user %s's %w; nothing was queued", ErrInvalidMessage, user, err)
	}
	m := &Message{
		ID:    newMessageID(),
		From:  n.Identity().User,
		To:    user,
		Text:  text,
		Sent:  n.cfg.Now().UTC(),
		State: StateQueued,
	}
	acked := n.waitAck(m.ID)
	if err := queueMessage(n.st, m); err != nil {
		n.dropAckWaiter(m.ID, acked)
		return nil, err
	}
	n.log.Debug("message queued", "id", m.ID, "to", user, "bytes", len(text))
	n.wakeWorker(user)
	select {
	case <-acked:
		m.State = StateDelivered
		return &SendResult{Message: m, Delivered: true}, nil
	case <-ctx.Done():
		n.dropAckWaiter(m.ID, acked)
		return &SendResult{Message: m}, nil
	}
}

// checkContact returns an error wrapping [ErrRevoked] if the newest
// certificate known for c is revoked and the CA directory has no newer
// one that is not: a user who rotated or recovered has a new
// certificate there.
func (n *Node) checkContact(ctx context.Context, c *Contact) error {
	cert, err := x509.ParseCertificate(c.Certificate)
	if err != nil {
		return nil
	}
	revoked := n.checkRevoked(cert)
	if revoked == nil {
		return nil
	}
	fresh, err := n.lookupUser(context.WithoutCancel(ctx), c.User)
	if err != nil {
		return revoked
	}
	if cert, err = x509.ParseCertificate(fresh.Certificate); err != nil {
		return revoked
	}
	return n.checkRevoked(cert)
}

func (n *Node) waitAck(id string) chan struct{} {
	ch := make(chan struct{})
	n.mu.Lock()
	n.ackWaiters[id] = append(n.ackWaiters[id], ch)
	n.mu.Unlock()
	return ch
}

func (n *Node) dropAckWaiter(id string, ch chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	list := n.ackWaiters[id]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(n.ackWaiters, id)
	} else {
		n.ackWaiters[id] = list
	}
}

// History returns the messages exchanged with user, oldest first: all of
// them, or the newest limit if limit is positive.
func (n *Node) History(user string, limit int) ([]*Message, error) {
	return History(n.st, user, limit)
}

// History reads the messages exchanged with user from st, as
// [Node.History] does, for when no node runs.
func History(st *store.Store, user string, limit int) ([]*Message, error) {
	if err := protocol.ValidateUserName(user); err != nil {
		return nil, err
	}
	msgs, err := history(st, user)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(msgs) > limit {
		msgs = msgs[len(msgs)-limit:]
	}
	return msgs, nil
}

// Subscribe returns a channel of the node's events and a function that
// ends the subscription. A subscriber that falls more than 256 events
// behind misses events rather than blocking the node.
func (n *Node) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 256)
	n.mu.Lock()
	n.subscribers[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.subscribers, ch)
		n.mu.Unlock()
	}
}

func (n *Node) publish(e Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subscribers {
		select {
		case ch <- e:
		default:
		}
	}
}
