package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/protocol"
)

// Timeouts of the session layer.
const (
	defaultHandshakeTimeout = 10 * time.Second
	writeTimeout            = 10 * time.Second
	dialTimeout             = 15 * time.Second
)

// session is one authenticated, encrypted stream with a peer.
type session struct {
	stream   network.Stream
	secure   *protocol.Session
	peerID   peer.ID
	peerUser string

	writeMu sync.Mutex
	// draining is set once no new frames may be written: after a key
	// rotation, or when the peer's certificate was superseded.
	draining atomic.Bool

	// sent holds the IDs of the messages written on this session, so a
	// delivery worker sends each message once per session.
	sentMu sync.Mutex
	sent   map[string]bool
	done   chan struct{}
}

func (s *session) write(typ protocol.FrameType, body []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.stream.SetWriteDeadline(time.Now().Add(writeTimeout))
	return s.secure.WriteFrame(s.stream, typ, body)
}

// markSent records id as sent on s and reports whether it was already.
func (s *session) markSent(id string) bool {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	if s.sent[id] {
		return true
	}
	s.sent[id] = true
	return false
}

func (n *Node) handshakeConfig(remote peer.ID) protocol.HandshakeConfig {
	id := n.Identity()
	return protocol.HandshakeConfig{
		Local:       protocol.Credentials{Cert: id.Cert, Key: id.SigningKey, CRLNumber: n.rev.Number()},
		LocalPeer:   id.PeerID,
		RemotePeer:  remote,
		VerifyPeer:  func(cert *x509.Certificate) error { return n.verifyPeer(cert, remote) },
		StepTimeout: n.cfg.HandshakeTimeout,
		Now:         n.cfg.Now,
	}
}

// verifyPeer accepts a certificate only if it chains to the node's CA,
// is valid now and binds the peer on the other end of the connection.
func (n *Node) verifyPeer(cert *x509.Certificate, remote peer.ID) error {
	if err := VerifyChain(cert, n.Identity().CACert, n.cfg.Now()); err != nil {
		return err
	}
	if err := n.checkRevoked(cert); err != nil {
		return err
	}
	id, err := protocol.CertIdentity(cert)
	if err != nil {
		return err
	}
	if id.PeerID != remote {
		return fmt.Errorf("certificate of %q names peer %s, not %s", id.User, id.PeerID, remote)
	}
	return nil
}

// handleSession serves a session stream a peer opened.
func (n *Node) handleSession(stream network.Stream) {
	remote := stream.Conn().RemotePeer()
	if ok, report := n.handshakes.allow(remote); !ok {
		stream.Reset()
		if report {
			n.log.Warn("peer rate-limited: too many handshakes; dropping them for now", "peer", remote.String())
		}
		return
	}
	secure, err := protocol.Respond(stream, n.handshakeConfig(remote))
	if err != nil {
		n.rejectPeer(stream, err)
		return
	}
	s := n.addSession(stream, secure)
	if s == nil {
		return
	}
	n.readLoop(s)
}

// rejectPeer logs a failed handshake and resets its stream.
func (n *Node) rejectPeer(stream network.Stream, err error) {
	stream.Reset()
	if n.ctx.Err() != nil {
		return
	}
	n.log.Warn("peer rejected", "peer", stream.Conn().RemotePeer().String(),
		"addr", stream.Conn().RemoteMultiaddr().String(), "reason", err.Error())
}

// addSession registers an established session and returns it, or nil
// if the node is closing.
func (n *Node) addSession(stream network.Stream, secure *protocol.Session) *session {
	cert := secure.PeerCertificate()
	id, _ := protocol.CertIdentity(cert)
	s := &session{
		stream:   stream,
		secure:   secure,
		peerID:   id.PeerID,
		peerUser: id.User,
		sent:     map[string]bool{},
		done:     make(chan struct{}),
	}
	addrs := n.h.Peerstore().Addrs(id.PeerID)
	if _, err := saveContact(n.st, cert, addrs, n.cfg.Now()); err != nil {
		n.log.Error("save contact", "user", id.User, "err", err)
	}
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		stream.Reset()
		return nil
	}
	n.sessions[s.peerID] = append(n.sessions[s.peerID], s)
	n.mu.Unlock()
	n.log.Info("session established", "peer", s.peerID.String(), "user", s.peerUser,
		"key_version", id.KeyVersion, "session", secure.Fingerprint())
	n.syncCRL(s.peerID, secure.PeerCRLNumber())
	n.wakeWorker(s.peerUser)
	return s
}

func (n *Node) removeSession(s *session) {
	n.mu.Lock()
	list := n.sessions[s.peerID]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(n.sessions, s.peerID)
	} else {
		n.sessions[s.peerID] = list
	}
	n.mu.Unlock()
	close(s.done)
	// Messages the session carried without an acknowledgement go out
	// again on the next one.
	n.wakeWorker(s.peerUser)
}

// readLoop reads frames from s until it fails or closes. Any frame that
// fails to open ends the session: the stream is reset and one line
// logged.
func (n *Node) readLoop(s *session) {
	defer n.removeSession(s)
	for {
		typ, body, err := s.secure.ReadFrame(s.stream)
		if err != nil {
			s.stream.Reset()
			if n.ctx.Err() == nil && !isClosed(err) {
				n.log.Warn("session ended on a bad frame", "peer", s.peerID.String(), "user", s.peerUser, "reason", err.Error())
			} else {
				n.log.Debug("session closed", "peer", s.peerID.String(), "user", s.peerUser)
			}
			return
		}
		if ok, report := n.frames.allow(s.peerID); !ok {
			if report {
				n.log.Warn("peer rate-limited: too many frames; ending the session", "peer", s.peerID.String(), "user", s.peerUser)
			}
			s.stream.Reset()
			return
		}
		switch typ {
		case protocol.FrameData:
			err = n.receiveData(s, body)
		case protocol.FrameAck:
			err = n.receiveAck(s, body)
		case protocol.FrameClose:
			s.stream.Close()
			return
		default:
			err = fmt.Errorf("unexpected frame type %d", typ)
		}
		if err != nil {
			s.stream.Reset()
			if n.ctx.Err() != nil || isClosed(err) {
				// The acknowledgement could not be written because the
				// peer went away: an ordinary end, not misbehaviour.
				n.log.Debug("session closed", "peer", s.peerID.String(), "user", s.peerUser)
				return
			}
			n.log.Warn("session ended on a bad message", "peer", s.peerID.String(), "user", s.peerUser, "reason", err.Error())
			return
		}
	}
}

// isClosed reports whether err is the ordinary end of a stream.
func isClosed(err error) bool {
	return errors.Is(err, network.ErrReset) || errors.Is(err, context.Canceled) || isEOF(err)
}

// receiveData stores an incoming message and acknowledges it. The
// acknowledgement goes out only after the message is in the store, so an
// acknowledged message survives a crash of this node.
func (n *Node) receiveData(s *session, body []byte) error {
	id, sent, text, err := decodeData(body)
	if err != nil {
		return err
	}
	if text == "" || !utf8.ValidString(text) {
		// Send never produces such a message, so the peer is not skm or
		// is misbehaving.
		return fmt.Errorf("message %s has empty or invalid UTF-8 text", id)
	}
	m := &Message{
		ID:        id,
		From:      s.peerUser,
		To:        n.Identity().User,
		Text:      text,
		Sent:      sent,
		Delivered: n.cfg.Now().UTC(),
		State:     StateReceived,
	}
	isNew, err := saveIncoming(n.st, m)
	if err != nil {
		return fmt.Errorf("store message %s: %w", id, err)
	}
	if isNew {
		n.log.Debug("message received", "id", id, "from", s.peerUser, "bytes", len(text))
		n.publish(Event{Type: "received", Message: m})
	}
	if s.draining.Load() {
		// This side no longer writes on s. The sender still has the
		// message queued and sends it again on a new session, where the
		// duplicate is acknowledged and not stored twice.
		return nil
	}
	ack, _ := hexID(id)
	return s.write(protocol.FrameAck, ack)
}

func (n *Node) receiveAck(s *session, body []byte) error {
	id, err := decodeAck(body)
	if err != nil {
		return err
	}
	changed, err := markDelivered(n.st, s.peerUser, id, n.cfg.Now())
	if err != nil {
		return fmt.Errorf("store acknowledgement %s: %w", id, err)
	}
	if !changed {
		// A duplicate acknowledgement, or one for a message that was not
		// sent to this peer's user, changes nothing and wakes no waiter.
		return nil
	}
	n.log.Debug("message delivered", "id", id, "to", s.peerUser)
	n.publish(Event{Type: "delivered", Message: &Message{ID: id, To: s.peerUser, State: StateDelivered}})
	n.mu.Lock()
	waiters := n.ackWaiters[id]
	delete(n.ackWaiters, id)
	n.mu.Unlock()
	for _, ch := range waiters {
		close(ch)
	}
	n.wakeWorker(s.peerUser)
	return nil
}

// currentSession returns the newest live session with p, or nil.
func (n *Node) currentSession(p peer.ID) *session {
	n.mu.Lock()
	defer n.mu.Unlock()
	list := n.sessions[p]
	for i := len(list) - 1; i >= 0; i-- {
		if !list[i].draining.Load() {
			return list[i]
		}
	}
	return nil
}

// connect returns a session with p, dialing and running the handshake if
// there is none.
func (n *Node) connect(ctx context.Context, p peer.ID, addrs []ma.Multiaddr) (*session, error) {
	if s := n.currentSession(p); s != nil {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := n.h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: addrs}); err != nil {
		return nil, err
	}
	// A session may run over a relayed connection until hole punching
	// replaces it with a direct one.
	stream, err := n.h.NewStream(network.WithAllowLimitedConn(ctx, "skm session"), p, protocol.SessionID)
	if err != nil {
		return nil, err
	}
	secure, err := protocol.Initiate(stream, n.handshakeConfig(p))
	if err != nil {
		n.rejectPeer(stream, err)
		return nil, fmt.Errorf("handshake with %s: %w", p, err)
	}
	s := n.addSession(stream, secure)
	if s == nil {
		return nil, n.ctx.Err()
	}
	if !n.goTracked(func() { n.readLoop(s) }) {
		s.stream.Reset()
		return nil, n.ctx.Err()
	}
	return s, nil
}
