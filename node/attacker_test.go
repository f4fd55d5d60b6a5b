package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Timing of the adversary tests. victimHandshakeTimeout is the victim's
// handshake step timeout: short, so that stalled handshakes end quickly,
// but far above what an honest handshake on loopback needs.
const (
	victimHandshakeTimeout = 2 * time.Second
	attackTimeout          = 15 * time.Second
	sendTimeout            = 15 * time.Second
	waitTimeout            = 15 * time.Second
)

// authority is a real CA in open mode that serves enrollment and its
// directory on loopback.
type authority struct {
	a    *ca.Authority
	st   *store.Store
	addr ma.Multiaddr
}

func startAuthority(t *testing.T, name string) *authority {
	t.Helper()
	st := newStore(t)
	a, err := ca.Init(st, name, ca.Config{Open: true})
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	h, addr := serve(t, a.PeerKey(), listenTCP, a.HandleEnroll)
	h.SetStreamHandler(protocol.DirectoryID, a.HandleDirectory)
	return &authority{a: a, st: st, addr: addr}
}

// enrollUser creates a node identity for user and enrolls it with c.
func (c *authority) enrollUser(t *testing.T, user string) (*store.Store, *node.Identity) {
	t.Helper()
	st := newNode(t, user)
	id, err := enroll(st, c.addr, "")
	if err != nil {
		t.Fatalf("enroll %s: %v", user, err)
	}
	return st, id
}

// issueAt creates a node identity for user and has c certify it with its
// clock set to now, for a validity of one hour. node.Enroll would reject
// a certificate that is not valid at the real time, so this calls the
// CA's Issue directly.
func (c *authority) issueAt(t *testing.T, user string, now time.Time) *node.Identity {
	t.Helper()
	id, err := node.Init(newStore(t), user)
	if err != nil {
		t.Fatalf("node.Init: %v", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: user},
		URIs:    id.Protocol().URIs(),
	}, id.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	shifted, err := ca.Load(c.st, ca.Config{Open: true, Now: clock, Validity: time.Hour})
	if err != nil {
		t.Fatalf("ca.Load: %v", err)
	}
	id.Cert, err = shifted.Issue(ca.Request{Peer: id.PeerID, CSR: csr})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	id.CACert = c.a.Certificate()
	return id
}

// syncBuffer is a bytes.Buffer that the victim's logger and the test can
// share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// linesSince returns the complete lines written after the first mark
// bytes.
func (b *syncBuffer) linesSince(mark int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	text := string(b.buf.Bytes()[mark:])
	i := strings.LastIndexByte(text, '\n')
	if i < 0 {
		return nil
	}
	return strings.Split(text[:i], "\n")
}

// testbed is a CA, a victim node enrolled with it and listening on TCP
// loopback, and the store of an honest node enrolled with the same CA.
type testbed struct {
	ca     *authority
	victim *node.Node
	log    *syncBuffer
	honest *store.Store
	// honestPeer is the honest node's peer, which the victim must never
	// report.
	honestPeer peer.ID
}

func newTestbed(t *testing.T) *testbed {
	t.Helper()
	tb := &testbed{ca: startAuthority(t, "Adversary CA"), log: &syncBuffer{}}
	st, _ := tb.ca.enrollUser(t, "victim")
	var honest *node.Identity
	tb.honest, honest = tb.ca.enrollUser(t, "honest")
	tb.honestPeer = honest.PeerID
	logger := slog.New(slog.NewTextHandler(tb.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v, err := node.Start(context.Background(), st, node.Config{
		Listen:           []ma.Multiaddr{ma.StringCast(listenTCP)},
		Log:              logger,
		HandshakeTimeout: victimHandshakeTimeout,
	})
	if err != nil {
		t.Fatalf("start the victim: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	tb.victim = v
	return tb
}

// checkServes starts the honest node, which dials the victim, runs a
// fresh handshake and sends one message that the victim must
// acknowledge. The node stops before it returns.
func (tb *testbed) checkServes(t *testing.T) {
	t.Helper()
	n, err := node.Start(context.Background(), tb.honest, node.Config{Peers: tb.victim.Addrs()})
	if err != nil {
		t.Fatalf("start the honest node: %v", err)
	}
	defer n.Close()
	waitFor(t, "the honest node's session with the victim", func() bool {
		peers, err := n.Peers()
		if err != nil {
			return false
		}
		for _, p := range peers {
			if p.User == "victim" && p.Session != "" {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	res, err := n.Send(ctx, "victim", "honest message")
	if err != nil {
		t.Fatalf("honest Send: %v", err)
	}
	if !res.Delivered {
		t.Fatal("the victim did not acknowledge the honest node's message")
	}
	if lines := tb.reports(0, tb.honestPeer); len(lines) != 0 {
		t.Fatalf("the victim reported the honest node:\n%s", strings.Join(lines, "\n"))
	}
}

// reports returns the victim's log lines written after mark that reject
// p or end a session with it.
func (tb *testbed) reports(mark int, p peer.ID) []string {
	var out []string
	for _, line := range tb.log.linesSince(mark) {
		if !strings.Contains(line, p.String()) {
			continue
		}
		if strings.Contains(line, "peer rejected") || strings.Contains(line, "session ended") {
			out = append(out, line)
		}
	}
	return out
}

// checkReported checks that attackErr, the error the attacker p saw, is
// a reset by the victim, and waits for the victim to report p after mark.
// Once the honest node has been served, the victim must have written
// exactly one report, and it must name reason.
func (tb *testbed) checkReported(t *testing.T, mark int, p peer.ID, attackErr error, reason string) {
	t.Helper()
	checkRejected(t, attackErr)
	waitFor(t, "the victim's report of "+p.String(), func() bool { return len(tb.reports(mark, p)) > 0 })
	tb.checkServes(t)
	lines := tb.reports(mark, p)
	if len(lines) != 1 {
		t.Fatalf("the victim reported %s %d times, want once:\n%s", p, len(lines), strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[0], reason) {
		t.Errorf("the victim's report does not name the reason %q:\n%s", reason, lines[0])
	}
}

// checkRejected fails the test unless err, the error an attacker saw,
// shows that the victim reset the stream. A timeout of the attacker's
// own does not count.
func checkRejected(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, network.ErrReset) {
		t.Errorf("the attacker saw %v, want a stream reset by the victim", err)
	}
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialVictim starts a dial-only libp2p host with key and opens a session
// stream to the victim. The stream's deadline is attackTimeout away.
func dialVictim(key p2pcrypto.PrivKey, victim *node.Node) (host.Host, network.Stream, error) {
	h, err := node.NewHost(node.HostConfig{Key: key})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), attackTimeout)
	defer cancel()
	info := peer.AddrInfo{ID: victim.Identity().PeerID, Addrs: victim.Host().Addrs()}
	if err := h.Connect(ctx, info); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("connect to the victim: %w", err)
	}
	s, err := h.NewStream(ctx, info.ID, protocol.SessionID)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("open a session stream: %w", err)
	}
	s.SetDeadline(time.Now().Add(attackTimeout))
	return h, s, nil
}

// attackStream is dialVictim for the test goroutine: the host closes at
// the end of the test.
func attackStream(t *testing.T, key p2pcrypto.PrivKey, victim *node.Node) network.Stream {
	t.Helper()
	h, s, err := dialVictim(key, victim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return s
}

// sendRaw writes raw to s, closes s for writing if closeWrite is set, and
// reads until the stream ends, as readToEnd does.
func sendRaw(s network.Stream, raw []byte, closeWrite bool) error {
	if _, err := s.Write(raw); err != nil {
		return err
	}
	if closeWrite {
		if err := s.CloseWrite(); err != nil {
			return err
		}
	}
	return readToEnd(s)
}

// readToEnd reads s until it ends and returns the read error: nil means
// the victim ended the stream cleanly instead of resetting it.
func readToEnd(s network.Stream) error {
	_, err := io.Copy(io.Discard, s)
	return err
}

// rawFrame returns body behind its 4-byte big-endian length.
func rawFrame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// hello is what a hostile initiator presents in handshake message 3.
type hello struct {
	cert []byte             // DER certificate
	key  ed25519.PrivateKey // signs the Noise static key
}

// The wire format of the session handshake, copied from the protocol
// package so that the tests can break its rules.
const (
	handshakeLabel = "skm handshake v1"
	roleInitiator  = 1
)

var noiseSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

func appendField(b, field []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(field)))
	return append(b, field...)
}

// rogueInitiate runs the initiator's side of the session handshake as
// protocol.Initiate does, but presents any certificate and signs with any
// key. protocol.Initiate checks its own config and would reject both. It
// returns nil if the victim sent its confirm frame, which means that it
// accepted the peer, and otherwise the error that ended the exchange.
func rogueInitiate(s network.Stream, local, remote peer.ID, h hello) error {
	static, err := noiseSuite.GenerateKeypair(rand.Reader)
	if err != nil {
		return err
	}
	var prologue []byte
	for _, f := range []string{handshakeLabel, protocol.SessionID, string(local), string(remote)} {
		prologue = appendField(prologue, []byte(f))
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   noiseSuite,
		Pattern:       noise.HandshakeXX,
		Initiator:     true,
		Prologue:      prologue,
		StaticKeypair: static,
	})
	if err != nil {
		return err
	}

	msg1, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return err
	}
	if err := protocol.WriteFrame(s, msg1); err != nil {
		return err
	}
	msg2, err := protocol.ReadFrame(s, 1<<16)
	if err != nil {
		return fmt.Errorf("read message 2: %w", err)
	}
	if _, _, _, err := hs.ReadMessage(nil, msg2); err != nil {
		return fmt.Errorf("open message 2: %w", err)
	}

	signed := appendField(appendField(appendField(nil, []byte(handshakeLabel)), []byte{roleInitiator}), static.Public)
	payload, err := json.Marshal(map[string][]byte{
		"certificate": h.cert,
		"signature":   ed25519.Sign(h.key, signed),
	})
	if err != nil {
		return err
	}
	msg3, _, _, err := hs.WriteMessage(nil, payload)
	if err != nil {
		return err
	}
	if err := protocol.WriteFrame(s, msg3); err != nil {
		return err
	}

	if _, err := protocol.ReadFrame(s, 1<<16); err != nil {
		return fmt.Errorf("read confirm: %w", err)
	}
	return nil
}

// rogueSession is a session that an enrolled attacker completed with the
// victim through protocol.Initiate, so that it can write frames of its
// choice.
type rogueSession struct {
	id     *node.Identity
	stream network.Stream
	secure *protocol.Session
}

func openRogueSession(t *testing.T, victim *node.Node, id *node.Identity) *rogueSession {
	t.Helper()
	s := attackStream(t, id.PeerKey, victim)
	secure, err := protocol.Initiate(s, protocol.HandshakeConfig{
		Local:      protocol.Credentials{Cert: id.Cert, Key: id.SigningKey},
		LocalPeer:  id.PeerID,
		RemotePeer: victim.Identity().PeerID,
		VerifyPeer: func(cert *x509.Certificate) error {
			return node.VerifyChain(cert, id.CACert, time.Now())
		},
	})
	if err != nil {
		t.Fatalf("handshake with the victim: %v", err)
	}
	s.SetDeadline(time.Now().Add(attackTimeout))
	return &rogueSession{id: id, stream: s, secure: secure}
}

// seal returns the wire bytes of one frame, length included, without
// sending them.
func (r *rogueSession) seal(t *testing.T, typ protocol.FrameType, body []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := r.secure.WriteFrame(&buf, typ, body); err != nil {
		t.Fatalf("seal a %v frame: %v", typ, err)
	}
	return buf.Bytes()
}

func (r *rogueSession) write(t *testing.T, raw []byte) {
	t.Helper()
	if _, err := r.stream.Write(raw); err != nil {
		t.Fatalf("write to the victim: %v", err)
	}
}

// readAck reads the next frame and fails the test unless it acknowledges
// message id.
func (r *rogueSession) readAck(t *testing.T, id []byte) {
	t.Helper()
	typ, body, err := r.secure.ReadFrame(r.stream)
	if err != nil {
		t.Fatalf("read the victim's acknowledgement: %v", err)
	}
	if typ != protocol.FrameAck || !bytes.Equal(body, id) {
		t.Fatalf("the victim sent a %v frame %x, want an ack of %x", typ, body, id)
	}
}

// readToReset reads frames until the victim ends the session and
// returns the read error. Acknowledgements may come first, but any
// other frame fails the test.
func (r *rogueSession) readToReset(t *testing.T) error {
	t.Helper()
	for {
		typ, _, err := r.secure.ReadFrame(r.stream)
		if err != nil {
			return err
		}
		if typ != protocol.FrameAck {
			t.Fatalf("the victim sent a %v frame instead of ending the session", typ)
		}
	}
}

// dataBody returns a data frame body as the node encodes it: a 16-byte
// message ID, the send time in Unix nanoseconds, then the text.
func dataBody(t *testing.T, text string) (body, id []byte) {
	t.Helper()
	id = make([]byte, 16)
	rand.Read(id)
	body = binary.BigEndian.AppendUint64(bytes.Clone(id), uint64(time.Now().UnixNano()))
	return append(body, text...), id
}

// received returns the texts the victim stored from user.
func received(t *testing.T, victim *node.Node, user string) []string {
	t.Helper()
	msgs, err := victim.History(user, 0)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var texts []string
	for _, m := range msgs {
		if m.From == user {
			texts = append(texts, m.Text)
		}
	}
	return texts
}
