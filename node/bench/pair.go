package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
)

// Protocol IDs that only bench hosts serve. The handshake measurement
// uses [protocol.SessionID] itself. The stream measurements run the same
// handshake on their own IDs, which tell the server what to do after it.
const (
	sessionSinkID = "/skm-bench/session-sink/1.0.0"
	sessionEchoID = "/skm-bench/session-echo/1.0.0"
	rawSinkID     = "/skm-bench/raw-sink/1.0.0"
	rawEchoID     = "/skm-bench/raw-echo/1.0.0"
)

// streamTimeout is the deadline of every bench stream and of every wait
// for the server. It only stops a measurement that hangs, so it is far
// above what any batch takes.
const streamTimeout = time.Minute

// Kind selects the carrier of a stream measurement's messages.
type Kind int

const (
	// KindSession is an skm session: the handshake, then frames that
	// [protocol.Session.WriteFrame] seals.
	KindSession Kind = iota
	// KindRaw is a bare libp2p stream carrying the same messages with a
	// 4-byte length prefix and without skm's encryption: the baseline.
	KindRaw
)

func (k Kind) String() string {
	if k == KindRaw {
		return "raw"
	}
	return "session"
}

// Pair is two libp2p hosts on 127.0.0.1 with skm certificates from one
// in-memory CA, connected to each other. The client opens streams, and
// the server serves them.
type Pair struct {
	ca                     *memoryCA
	client, server         *identity
	clientHost, serverHost host.Host
	// results receives the outcome of each stream the server handles.
	results chan serverResult
	closed  chan struct{}
}

// serverResult is the outcome of the server side of one stream.
type serverResult struct {
	frames int
	// last is when the server read the last frame.
	last time.Time
	err  error
}

// NewPair starts two hosts that listen on 127.0.0.1 over transport, [TCP]
// or [QUIC], and connects the client to the server. Close stops them.
func NewPair(ctx context.Context, transport string) (*Pair, error) {
	listen, err := listenAddr(transport)
	if err != nil {
		return nil, err
	}
	p := &Pair{results: make(chan serverResult), closed: make(chan struct{})}

	if p.ca, err = newMemoryCA(); err != nil {
		return nil, err
	}
	if p.client, err = p.ca.issue("client"); err != nil {
		return nil, err
	}
	if p.server, err = p.ca.issue("server"); err != nil {
		return nil, err
	}

	if p.serverHost, err = node.NewHost(node.HostConfig{Key: p.server.peerKey, Listen: listen}); err != nil {
		return nil, err
	}
	if p.clientHost, err = node.NewHost(node.HostConfig{Key: p.client.peerKey, Listen: listen}); err != nil {
		p.serverHost.Close()
		return nil, err
	}

	p.serverHost.SetStreamHandler(protocol.SessionID, p.handleHandshake)
	p.serverHost.SetStreamHandler(sessionSinkID, p.handleFrames(KindSession, false))
	p.serverHost.SetStreamHandler(sessionEchoID, p.handleFrames(KindSession, true))
	p.serverHost.SetStreamHandler(rawSinkID, p.handleFrames(KindRaw, false))
	p.serverHost.SetStreamHandler(rawEchoID, p.handleFrames(KindRaw, true))

	server := peer.AddrInfo{ID: p.serverHost.ID(), Addrs: p.serverHost.Addrs()}
	if err := p.clientHost.Connect(ctx, server); err != nil {
		p.Close()
		return nil, fmt.Errorf("connect bench hosts over %s: %w", transport, err)
	}
	return p, nil
}

// Close stops both hosts.
func (p *Pair) Close() error {
	close(p.closed)
	return errors.Join(p.clientHost.Close(), p.serverHost.Close())
}

// config returns the handshake configuration of local in a session with
// remote.
func (p *Pair) config(local, remote *identity) protocol.HandshakeConfig {
	return protocol.HandshakeConfig{
		Local:      local.creds,
		LocalPeer:  local.peerID,
		RemotePeer: remote.peerID,
		VerifyPeer: verifier(p.ca.cert, remote.peerID),
	}
}

// handleHandshake responds to a handshake, then closes the session and
// its stream, because the handshake measurement ends there.
func (p *Pair) handleHandshake(s network.Stream) {
	secure, err := protocol.Respond(s, p.config(p.server, p.client))
	if err != nil {
		s.Reset()
	} else {
		secure.Close()
		s.Close()
	}
	p.report(serverResult{err: err})
}

// handleFrames returns a handler that responds to the handshake if kind
// is [KindSession], then reads messages until the client closes its side,
// sending each one back if echo is set.
func (p *Pair) handleFrames(kind Kind, echo bool) network.StreamHandler {
	return func(s network.Stream) {
		var f framer = rawFramer{}
		if kind == KindSession {
			secure, err := protocol.Respond(s, p.config(p.server, p.client))
			if err != nil {
				s.Reset()
				p.report(serverResult{err: err})
				return
			}
			defer secure.Close()
			f = sessionFramer{secure}
		}
		s.SetDeadline(time.Now().Add(streamTimeout))
		r := serveFrames(s, f, echo)
		if r.err != nil {
			s.Reset()
		} else {
			s.Close()
		}
		p.report(r)
	}
}

// serveFrames reads messages from s until the end of the stream.
func serveFrames(s network.Stream, f framer, echo bool) serverResult {
	var r serverResult
	for {
		body, err := f.read(s)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.err = fmt.Errorf("server: read message %d: %w", r.frames+1, err)
			}
			return r
		}
		r.frames++
		r.last = time.Now()
		if echo {
			if err := f.write(s, body); err != nil {
				r.err = fmt.Errorf("server: write reply %d: %w", r.frames, err)
				return r
			}
		}
	}
}

// report hands r to the measurement waiting for it.
func (p *Pair) report(r serverResult) {
	select {
	case p.results <- r:
	case <-p.closed:
	}
}

// wait returns the result of the next stream the server finishes.
func (p *Pair) wait(ctx context.Context) (serverResult, error) {
	timer := time.NewTimer(streamTimeout)
	defer timer.Stop()
	select {
	case r := <-p.results:
		return r, r.err
	case <-ctx.Done():
		return serverResult{}, ctx.Err()
	case <-timer.C:
		return serverResult{}, errors.New("timed out waiting for the bench server")
	}
}

// open opens a stream from the client to the server's sink, or to its
// echo if echo is set, and for [KindSession] runs the handshake on it.
func (p *Pair) open(ctx context.Context, kind Kind, echo bool) (network.Stream, framer, error) {
	id := streamID(kind, echo)
	s, err := p.clientHost.NewStream(ctx, p.serverHost.ID(), id)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s stream: %w", id, err)
	}
	var f framer = rawFramer{}
	if kind == KindSession {
		secure, err := protocol.Initiate(s, p.config(p.client, p.server))
		if err != nil {
			s.Reset()
			// Take the server's result, so that the next wait does
			// not see it.
			p.wait(ctx)
			return nil, nil, err
		}
		f = sessionFramer{secure}
	}
	s.SetDeadline(time.Now().Add(streamTimeout))
	return s, f, nil
}

// streamID returns the protocol ID of the server's handler for kind.
func streamID(kind Kind, echo bool) libp2pprotocol.ID {
	switch {
	case kind == KindSession && echo:
		return sessionEchoID
	case kind == KindSession:
		return sessionSinkID
	case echo:
		return rawEchoID
	}
	return rawSinkID
}

// framer writes and reads one message on a stream.
type framer interface {
	write(w io.Writer, body []byte) error
	read(r io.Reader) ([]byte, error)
}

// rawFramer is the baseline's framing: [protocol.WriteFrame] writes the
// length and the body in one Write, as a session frame is written.
type rawFramer struct{}

func (rawFramer) write(w io.Writer, body []byte) error { return protocol.WriteFrame(w, body) }
func (rawFramer) read(r io.Reader) ([]byte, error) {
	return protocol.ReadFrame(r, protocol.MaxPlaintext)
}

// sessionFramer carries each message as one data frame of a session.
type sessionFramer struct{ s *protocol.Session }

func (f sessionFramer) write(w io.Writer, body []byte) error {
	return f.s.WriteFrame(w, protocol.FrameData, body)
}

func (f sessionFramer) read(r io.Reader) ([]byte, error) {
	_, body, err := f.s.ReadFrame(r)
	return body, err
}

// closeFramer zeroes the session keys of f, if it has any.
func closeFramer(f framer) {
	if sf, ok := f.(sessionFramer); ok {
		sf.s.Close()
	}
}
