package node_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
)

// These tests play hostile peers against a real node, the victim. Each
// attack must fail on the attacker's side, and the victim must log
// exactly one line that names the attacker's peer and the reason. After
// every attack, an honest node must still complete a fresh handshake
// with the victim and deliver a message.

// attack runs one attack on the victim and returns the attacker's peer
// and the error that the attacker saw.
type attack func(t *testing.T, tb *testbed) (peer.ID, error)

// Raw handshake inputs.
var (
	// httpRequest starts with "GET ", which reads as a length far above
	// the handshake's maximum.
	httpRequest = []byte("GET / HTTP/1.1\r\nHost: victim\r\n\r\n")
	// shortNoiseMessage is a frame too short to hold an ephemeral key.
	shortNoiseMessage = rawFrame([]byte("hello"))
	// oversizedHeader declares the largest length the prefix can hold.
	oversizedHeader = []byte{0xff, 0xff, 0xff, 0xff}
	// truncatedFrame declares 100 bytes and sends 10.
	truncatedFrame = []byte{0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
)

// firstMessage returns a valid handshake message 1: in Noise XX it is
// only the initiator's ephemeral key, and any 32 bytes are an X25519
// public key.
func firstMessage() []byte {
	e := make([]byte, 32)
	rand.Read(e)
	return rawFrame(e)
}

// rawAttack sends raw on a fresh session stream, closing it for writing
// if closeWrite is set, and reads until the victim ends the stream.
func rawAttack(raw []byte, closeWrite bool) attack {
	return func(t *testing.T, tb *testbed) (peer.ID, error) {
		s := attackStream(t, newPeerKey(t), tb.victim)
		return s.Conn().LocalPeer(), sendRaw(s, raw, closeWrite)
	}
}

// presentAttack runs rogueInitiate. pick returns the identity whose
// libp2p key the attacker connects with and the hello it presents.
func presentAttack(pick func(t *testing.T, tb *testbed) (*node.Identity, hello)) attack {
	return func(t *testing.T, tb *testbed) (peer.ID, error) {
		self, h := pick(t, tb)
		s := attackStream(t, self.PeerKey, tb.victim)
		return self.PeerID, rogueInitiate(s, self.PeerID, tb.victim.Identity().PeerID, h)
	}
}

// ownHello presents id's own certificate, signed with its own key.
func ownHello(id *node.Identity) hello { return hello{cert: id.Cert.Raw, key: id.SigningKey} }

// stranger returns a fresh node identity without a certificate.
func stranger(t *testing.T, user string) *node.Identity {
	t.Helper()
	id, err := node.Init(newStore(t), user)
	if err != nil {
		t.Fatalf("node.Init: %v", err)
	}
	return id
}

func TestAdversaryHandshakeControl(t *testing.T) {
	// The rogue initiator must pass with a valid certificate, or the
	// rejections below could come from a fault of its own.
	tb := newTestbed(t)
	_, id := tb.ca.enrollUser(t, "control")
	s := attackStream(t, id.PeerKey, tb.victim)
	if err := rogueInitiate(s, id.PeerID, tb.victim.Identity().PeerID, ownHello(id)); err != nil {
		t.Fatalf("the victim rejected a valid certificate from the rogue initiator: %v", err)
	}
}

func TestAdversaryHandshake(t *testing.T) {
	tb := newTestbed(t)
	tb.checkServes(t)
	tests := []struct {
		name   string
		attack attack
		reason string
	}{
		{name: "garbage http request", reason: "frame too large",
			attack: rawAttack(httpRequest, false)},
		{name: "garbage short noise message", reason: "invalid Noise message",
			attack: rawAttack(shortNoiseMessage, false)},
		{name: "garbage truncated then closed", reason: "unexpected EOF",
			attack: rawAttack(truncatedFrame, true)},
		{name: "oversized first frame", reason: "frame too large",
			attack: rawAttack(oversizedHeader, false)},
		{name: "stall inside first frame", reason: "read message 1",
			attack: rawAttack(truncatedFrame, false)},
		{name: "stall after first message", reason: "read message 3",
			attack: rawAttack(firstMessage(), false)},
		{name: "unparsable certificate", reason: "peer certificate rejected",
			attack: presentAttack(func(t *testing.T, _ *testbed) (*node.Identity, hello) {
				self := stranger(t, "garbled")
				return self, hello{cert: []byte("not a certificate"), key: self.SigningKey}
			})},
		{name: "another user's certificate", reason: "handshake signature does not verify",
			attack: presentAttack(func(t *testing.T, tb *testbed) (*node.Identity, hello) {
				// The attacker holds bob's certificate, which is public,
				// but signs with its own key.
				_, bob := tb.ca.enrollUser(t, "bob")
				self := stranger(t, "bob")
				return self, hello{cert: bob.Cert.Raw, key: self.SigningKey}
			})},
		{name: "expired certificate", reason: "certificate has expired or is not yet valid",
			attack: presentAttack(func(t *testing.T, tb *testbed) (*node.Identity, hello) {
				id := tb.ca.issueAt(t, "expired", time.Now().Add(-48*time.Hour))
				return id, ownHello(id)
			})},
		{name: "not yet valid certificate", reason: "certificate has expired or is not yet valid",
			attack: presentAttack(func(t *testing.T, tb *testbed) (*node.Identity, hello) {
				id := tb.ca.issueAt(t, "early", time.Now().Add(48*time.Hour))
				return id, ownHello(id)
			})},
		{name: "certificate from another CA", reason: "certificate signed by unknown authority",
			attack: presentAttack(func(t *testing.T, _ *testbed) (*node.Identity, hello) {
				_, id := startAuthority(t, "Other CA").enrollUser(t, "outsider")
				return id, ownHello(id)
			})},
		{name: "certificate names another peer", reason: "peer certificate names another peer",
			attack: presentAttack(func(t *testing.T, tb *testbed) (*node.Identity, hello) {
				// Enrolled with peer key A, connecting as peer B.
				_, enrolled := tb.ca.enrollUser(t, "twofaced")
				return stranger(t, "twofaced"), ownHello(enrolled)
			})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mark := tb.log.Len()
			p, err := tc.attack(t, tb)
			tb.checkReported(t, mark, p, err, tc.reason)
		})
	}
}

func TestAdversarySessionFrames(t *testing.T) {
	tb := newTestbed(t)
	tests := []struct {
		name string
		// attack writes bad frames on a session the victim accepted.
		attack func(t *testing.T, r *rogueSession)
		reason string
		// stored lists the texts the victim must have stored from the
		// attacker.
		stored []string
	}{
		{name: "oversized frame after handshake", reason: "frame too large",
			attack: func(t *testing.T, r *rogueSession) {
				r.write(t, oversizedHeader)
			}},
		{name: "replayed data frame", reason: "replayed frame", stored: []string{"replayed"},
			attack: func(t *testing.T, r *rogueSession) {
				body, id := dataBody(t, "replayed")
				raw := r.seal(t, protocol.FrameData, body)
				r.write(t, raw)
				r.readAck(t, id)
				r.write(t, raw)
			}},
		{name: "tampered ciphertext", reason: "frame authentication failed",
			attack: func(t *testing.T, r *rogueSession) {
				body, _ := dataBody(t, "tampered")
				raw := r.seal(t, protocol.FrameData, body)
				// Length prefix (4 bytes), then the 16-byte header, then
				// the ciphertext.
				raw[4+16] ^= 1
				r.write(t, raw)
			}},
		{name: "tampered sequence number", reason: "frame authentication failed",
			attack: func(t *testing.T, r *rogueSession) {
				body, _ := dataBody(t, "tampered")
				raw := r.seal(t, protocol.FrameData, body)
				// The last header byte ends the sequence number: 1 becomes 3.
				raw[4+15] ^= 2
				r.write(t, raw)
			}},
		{name: "data shorter than header", reason: "shorter than its 24-byte header",
			attack: func(t *testing.T, r *rogueSession) {
				r.write(t, r.seal(t, protocol.FrameData, []byte("short")))
			}},
		{name: "ack of wrong length", reason: "acknowledgement of 5 bytes",
			attack: func(t *testing.T, r *rogueSession) {
				r.write(t, r.seal(t, protocol.FrameAck, []byte("short")))
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, id := tb.ca.enrollUser(t, fmt.Sprintf("frames%d", i))
			r := openRogueSession(t, tb.victim, id)
			mark := tb.log.Len()
			tc.attack(t, r)
			tb.checkReported(t, mark, id.PeerID, r.readToReset(t), tc.reason)
			if got := received(t, tb.victim, id.User); !slices.Equal(got, tc.stored) {
				t.Errorf("the victim stored %q from the attacker, want %q", got, tc.stored)
			}
		})
	}
}

func TestAdversaryStrayAcks(t *testing.T) {
	// An acknowledgement of an ID that is not in the attacker's outbox,
	// because it was never sent, was already acknowledged or went to
	// another user, is harmless: the victim ignores it and keeps the
	// session.
	tb := newTestbed(t)
	tests := []struct {
		name string
		// ack writes the stray acknowledgements.
		ack func(t *testing.T, tb *testbed, r *rogueSession)
		// check, if set, runs once the victim has read past the
		// acknowledgements.
		check func(t *testing.T, tb *testbed)
	}{
		{name: "ack of unknown ID", ack: func(t *testing.T, _ *testbed, r *rogueSession) {
			id := make([]byte, 16)
			rand.Read(id)
			r.write(t, r.seal(t, protocol.FrameAck, id))
		}},
		{name: "ack of acknowledged ID", ack: func(t *testing.T, tb *testbed, r *rogueSession) {
			result := make(chan bool, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
				defer cancel()
				res, err := tb.victim.Send(ctx, r.id.User, "to the attacker")
				result <- err == nil && res.Delivered
			}()
			typ, body, err := r.secure.ReadFrame(r.stream)
			if err != nil || typ != protocol.FrameData || len(body) < 16 {
				t.Fatalf("read the victim's message: %v frame of %d bytes, %v", typ, len(body), err)
			}
			ack := r.seal(t, protocol.FrameAck, body[:16])
			r.write(t, ack)
			if !<-result {
				t.Fatal("the victim's Send did not report the message delivered")
			}
			r.write(t, r.seal(t, protocol.FrameAck, body[:16]))
		}},
		{name: "ack of another user's message",
			ack: func(t *testing.T, tb *testbed, r *rogueSession) {
				// The victim learns the honest node as a contact, which then
				// goes offline, so the victim's message to it stays queued.
				tb.checkServes(t)
				result := make(chan *node.SendResult, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), foreignAckWait)
					defer cancel()
					res, _ := tb.victim.Send(ctx, "honest", foreignText)
					result <- res
				}()
				var id string
				waitFor(t, "the victim's queued message", func() bool {
					id = queuedID(t, tb.victim, "honest", foreignText)
					return id != ""
				})
				raw, err := hex.DecodeString(id)
				if err != nil {
					t.Fatal(err)
				}
				r.write(t, r.seal(t, protocol.FrameAck, raw))
				if res := <-result; res == nil || res.Delivered {
					t.Error("the victim's Send reported delivery on an ack from another user")
				}
			},
			check: func(t *testing.T, tb *testbed) {
				if queuedID(t, tb.victim, "honest", foreignText) == "" {
					t.Error("an ack from another user took the message out of the outbox")
				}
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, id := tb.ca.enrollUser(t, fmt.Sprintf("acks%d", i))
			r := openRogueSession(t, tb.victim, id)
			mark := tb.log.Len()
			tc.ack(t, tb, r)

			// The session must still carry a message both ways.
			body, msgID := dataBody(t, "after the ack")
			r.write(t, r.seal(t, protocol.FrameData, body))
			r.readAck(t, msgID)
			if got := received(t, tb.victim, id.User); !slices.Equal(got, []string{"after the ack"}) {
				t.Errorf("the victim stored %q from the attacker", got)
			}
			if tc.check != nil {
				tc.check(t, tb)
			}
			tb.checkServes(t)
			if lines := tb.reports(mark, id.PeerID); len(lines) != 0 {
				t.Errorf("the victim ended the session on a stray ack:\n%s", strings.Join(lines, "\n"))
			}
		})
	}
}

// foreignText is the victim's message to the honest node that another
// user acknowledges, and foreignAckWait how long the victim's Send waits
// for an acknowledgement.
const (
	foreignText    = "for the honest node only"
	foreignAckWait = time.Second
)

// queuedID returns the ID of the victim's queued message to user with
// text, or "" if there is none.
func queuedID(t *testing.T, victim *node.Node, user, text string) string {
	t.Helper()
	msgs, err := victim.History(user, 0)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	for _, m := range msgs {
		if m.Text == text && m.State == node.StateQueued {
			return m.ID
		}
	}
	return ""
}

func TestAdversaryConcurrentGarbage(t *testing.T) {
	// Many hostile connections at once, some stalling until the victim's
	// handshake timeout, must not keep an honest node from being served.
	tb := newTestbed(t)
	const attackers = 50
	inputs := [][]byte{httpRequest, shortNoiseMessage, firstMessage(), truncatedFrame}
	keys := make([]p2pcrypto.PrivKey, attackers)
	peers := make([]peer.ID, attackers)
	for i := range keys {
		keys[i] = newPeerKey(t)
		var err error
		if peers[i], err = peer.IDFromPrivateKey(keys[i]); err != nil {
			t.Fatal(err)
		}
	}
	mark := tb.log.Len()
	setupErrs := make([]error, attackers)
	readErrs := make([]error, attackers)
	var written, done sync.WaitGroup
	written.Add(attackers)
	done.Add(attackers)
	t.Cleanup(done.Wait)
	for i := range attackers {
		go func() {
			defer done.Done()
			h, s, err := dialVictim(keys[i], tb.victim)
			if err != nil {
				setupErrs[i] = err
				written.Done()
				return
			}
			defer h.Close()
			_, setupErrs[i] = s.Write(inputs[i%len(inputs)])
			written.Done()
			readErrs[i] = readToEnd(s)
		}()
	}
	written.Wait()
	tb.checkServes(t)
	done.Wait()

	for i, p := range peers {
		if setupErrs[i] != nil {
			t.Errorf("attacker %d: %v", i, setupErrs[i])
			continue
		}
		checkRejected(t, readErrs[i])
		waitFor(t, "the victim's report of attacker "+p.String(), func() bool {
			return len(tb.reports(mark, p)) > 0
		})
	}
	tb.checkServes(t)
	for i, p := range peers {
		if lines := tb.reports(mark, p); len(lines) != 1 {
			t.Errorf("the victim reported attacker %d %d times, want once:\n%s", i, len(lines), strings.Join(lines, "\n"))
		}
	}
}
