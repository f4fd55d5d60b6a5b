package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/big"
	"slices"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
)

// gossipWait bounds how long a CRL may take to cross the test network.
// GossipSub builds its mesh on a one-second heartbeat.
const gossipWait = 10 * time.Second

// quietWait is how long a test watches for a CRL that must not arrive,
// after a later CRL from the same sender has arrived.
const quietWait = time.Second

// newCRLIssuer returns a CA, named "Test CA", whose key the test holds,
// to sign CRLs that a ca.Authority never would.
func newCRLIssuer(t *testing.T) *fakeCA {
	t.Helper()
	return newFakeCA(t, newPeerKey(t), func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: "Test CA"}
		c.KeyUsage |= x509.KeyUsageCRLSign
	})
}

// signCRL signs a CRL with number that lists serials, valid for an hour.
func (f *fakeCA) signCRL(t *testing.T, number int64, serials ...int64) *x509.RevocationList {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
	for _, n := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: big.NewInt(n), RevocationTime: now, ReasonCode: ca.ReasonKeyCompromise,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, f.cert, f.key)
	if err != nil {
		t.Fatalf("create CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// numberedCRL returns CRL number of f, which lists serials 1 to number.
func (f *fakeCA) numberedCRL(t *testing.T, number int64) *x509.RevocationList {
	t.Helper()
	serials := make([]int64, number)
	for i := range serials {
		serials[i] = int64(i) + 1
	}
	return f.signCRL(t, number, serials...)
}

func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	h, err := node.NewHost(node.HostConfig{Key: newPeerKey(t), Listen: []ma.Multiaddr{ma.StringCast(listenTCP)}})
	if err != nil {
		t.Fatalf("start host: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func connectHosts(t *testing.T, from, to host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gossipWait)
	defer cancel()
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatalf("connect hosts: %v", err)
	}
}

// revocationPeer is a host that runs node.JoinRevocations and records
// every CRL it applies.
type revocationPeer struct {
	h       host.Host
	rev     *node.Revocations
	applied chan *x509.RevocationList
}

func joinRevocationPeer(t *testing.T, caCert *x509.Certificate, current *x509.RevocationList) *revocationPeer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The buffer outlasts every test here, so apply never blocks the
	// Revocations read loop and Close cannot hang on it.
	p := &revocationPeer{h: loopbackHost(t), applied: make(chan *x509.RevocationList, 64)}
	apply := func(crl *x509.RevocationList, _ string) { p.applied <- crl }
	rev, err := node.JoinRevocations(ctx, p.h, caCert, current, apply, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("JoinRevocations: %v", err)
	}
	t.Cleanup(rev.Close)
	p.rev = rev
	return p
}

// expectApplied waits for the next CRL that p applies and fails the test
// unless it is want.
func (p *revocationPeer) expectApplied(t *testing.T, name string, want *x509.RevocationList) {
	t.Helper()
	select {
	case got := <-p.applied:
		if !bytes.Equal(got.Raw, want.Raw) {
			t.Errorf("%s applied CRL %s, want CRL %s", name, got.Number, want.Number)
		}
	case <-time.After(gossipWait):
		t.Errorf("%s did not apply CRL %s within %s", name, want.Number, gossipWait)
	}
}

// await reports whether p applies want within wait. It skips older CRLs.
func (p *revocationPeer) await(want *x509.RevocationList, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case got := <-p.applied:
			if got.Number.Cmp(want.Number) >= 0 {
				return bytes.Equal(got.Raw, want.Raw)
			}
		case <-timer.C:
			return false
		}
	}
}

// expectNoneApplied fails the test if p has applied a CRL that no
// expectApplied took.
func (p *revocationPeer) expectNoneApplied(t *testing.T, name string) {
	t.Helper()
	select {
	case got := <-p.applied:
		t.Errorf("%s applied CRL %s, want none", name, got.Number)
	default:
	}
}

// rawGossipPeer is a bare GossipSub router on a revocation topic with no
// validator. It publishes any bytes, and its subscription shows whatever
// its neighbors forward.
type rawGossipPeer struct {
	h     host.Host
	topic *pubsub.Topic
	sub   *pubsub.Subscription
}

func joinRawGossip(t *testing.T, topic string) *rawGossipPeer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	g := &rawGossipPeer{h: loopbackHost(t)}
	ps, err := pubsub.NewGossipSub(ctx, g.h)
	if err != nil {
		t.Fatalf("start GossipSub: %v", err)
	}
	if g.topic, err = ps.Join(topic); err != nil {
		t.Fatalf("join %s: %v", topic, err)
	}
	if g.sub, err = g.topic.Subscribe(); err != nil {
		t.Fatalf("subscribe to %s: %v", topic, err)
	}
	t.Cleanup(func() {
		g.sub.Cancel()
		g.topic.Close()
	})
	return g
}

func (g *rawGossipPeer) publish(t *testing.T, data []byte) {
	t.Helper()
	if err := g.topic.Publish(context.Background(), data); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// await reports whether a neighbor forwards want to g within wait. It
// fails the test if a neighbor forwards any of unwanted first.
func (g *rawGossipPeer) await(t *testing.T, want []byte, wait time.Duration, unwanted ...[]byte) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		m, err := g.sub.Next(ctx)
		if err != nil {
			return false
		}
		if m.ReceivedFrom == g.h.ID() {
			continue
		}
		if slices.ContainsFunc(unwanted, func(u []byte) bool { return bytes.Equal(m.Data, u) }) {
			t.Errorf("peer %s forwarded a message that it must drop", m.ReceivedFrom)
		}
		if bytes.Equal(m.Data, want) {
			return true
		}
	}
}

// waitTopicPeers waits until list reports every peer in want.
func waitTopicPeers(t *testing.T, name string, list func() []peer.ID, want ...peer.ID) {
	t.Helper()
	deadline := time.Now().Add(gossipWait)
	for {
		have := list()
		missing := slices.DeleteFunc(slices.Clone(want), func(p peer.ID) bool { return slices.Contains(have, p) })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not see %v on the topic within %s", name, missing, gossipWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// warmUp publishes ever newer CRLs from m, starting at number, until A,
// B and C apply and O receives the same one. Then B's mesh links to A, C
// and O carry messages: a message that B forwards before a link joins the
// mesh never reaches that peer. It returns the number of that CRL.
func warmUp(t *testing.T, issuer *fakeCA, m, o *rawGossipPeer, number int64, peers ...*revocationPeer) int64 {
	t.Helper()
	deadline := time.Now().Add(gossipWait)
	for ; time.Now().Before(deadline); number++ {
		crl := issuer.numberedCRL(t, number)
		m.publish(t, crl.Raw)
		ok := o.await(t, crl.Raw, 1500*time.Millisecond)
		for _, p := range peers {
			ok = p.await(crl, 500*time.Millisecond) && ok
		}
		if ok {
			return number
		}
	}
	t.Fatalf("CRLs from M do not reach every peer within %s", gossipWait)
	return 0
}

// TestRevocationGossip runs a line of nodes A—B—C on one CA's topic,
// with a bare GossipSub router M that publishes what A's own validator
// stops, and a bare subscriber O that shows what B forwards. M and O
// connect only to B.
func TestRevocationGossip(t *testing.T) {
	issuer := newCRLIssuer(t)
	first := issuer.numberedCRL(t, 1)
	forged := newCRLIssuer(t).signCRL(t, 100, 1, 2, 3, 4, 5, 6, 7).Raw
	duplicate := issuer.signCRL(t, 100, 1, 2, 7, 7).Raw

	a := joinRevocationPeer(t, issuer.cert, first)
	b := joinRevocationPeer(t, issuer.cert, first)
	c := joinRevocationPeer(t, issuer.cert, first)
	topic := node.RevocationTopic(issuer.cert)
	m := joinRawGossip(t, topic)
	o := joinRawGossip(t, topic)
	connectHosts(t, a.h, b.h)
	connectHosts(t, b.h, c.h)
	connectHosts(t, m.h, b.h)
	connectHosts(t, o.h, b.h)
	waitTopicPeers(t, "A", a.rev.Peers, b.h.ID())
	waitTopicPeers(t, "B", b.rev.Peers, a.h.ID(), c.h.ID(), m.h.ID(), o.h.ID())
	waitTopicPeers(t, "C", c.rev.Peers, b.h.ID())
	waitTopicPeers(t, "M", m.topic.ListPeers, b.h.ID())
	waitTopicPeers(t, "O", o.topic.ListPeers, b.h.ID())
	number := warmUp(t, issuer, m, o, 2, a, b, c)

	// Each rejected CRL is followed by a genuine one from the same
	// sender, which must be the next CRL that A, B and C apply.
	ctx := context.Background()
	bad := []struct {
		name string
		der  []byte
	}{
		{"forged CRL rejected", forged},
		{"replayed older CRL ignored", first.Raw},
		{"duplicate serial CRL rejected", duplicate},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			number++
			genuine := issuer.numberedCRL(t, number)
			if err := a.rev.Publish(ctx, &x509.RevocationList{Raw: tc.der}); err == nil {
				t.Error("A's own validator let the CRL out")
			}
			m.publish(t, tc.der)
			m.publish(t, genuine.Raw)

			if !o.await(t, genuine.Raw, gossipWait, tc.der) {
				t.Errorf("O did not receive CRL %s within %s", genuine.Number, gossipWait)
			}
			c.expectApplied(t, "C", genuine)
			b.expectApplied(t, "B", genuine)
			a.expectApplied(t, "A", genuine)
			// Nothing is wanted here: O only watches for tc.der.
			o.await(t, nil, quietWait, tc.der)
			for _, p := range []struct {
				name string
				peer *revocationPeer
			}{{"A", a}, {"B", b}, {"C", c}} {
				p.peer.expectNoneApplied(t, p.name)
			}
		})
	}

	t.Run("genuine newer CRL applied", func(t *testing.T) {
		number++
		genuine := issuer.numberedCRL(t, number)
		if err := a.rev.Publish(ctx, genuine); err != nil {
			t.Fatalf("A publishes CRL %s: %v", genuine.Number, err)
		}
		a.expectApplied(t, "A", genuine)
		b.expectApplied(t, "B", genuine)
		c.expectApplied(t, "C", genuine)
		if !o.await(t, genuine.Raw, gossipWait) {
			t.Errorf("O did not receive CRL %s within %s", genuine.Number, gossipWait)
		}
		if got := c.rev.Number(); got != uint64(number) {
			t.Errorf("C's current CRL number = %d, want %d", got, number)
		}
		if got := c.rev.Current(); got == nil || len(got.RevokedCertificateEntries) != int(number) {
			t.Errorf("C's current CRL does not list serials 1 to %d", number)
		}
	})
}

// serveCRLFrame starts a host that answers every CRL request with frame,
// written as is, as a hostile peer would.
func serveCRLFrame(t *testing.T, frame []byte) host.Host {
	t.Helper()
	h := loopbackHost(t)
	h.SetStreamHandler(protocol.CRLID, func(s network.Stream) {
		defer s.Close()
		if _, err := s.Write(frame); err != nil {
			s.Reset()
		}
	})
	return h
}

func crlFrame(t *testing.T, der []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := protocol.WriteFrame(&buf, der); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRevocationsFetch(t *testing.T) {
	issuer := newCRLIssuer(t)
	crls := []*x509.RevocationList{nil, issuer.numberedCRL(t, 1), nil, issuer.numberedCRL(t, 3)}
	forged := newCRLIssuer(t).signCRL(t, 3, 1, 2).Raw
	oversized := binary.BigEndian.AppendUint32(nil, ca.MaxCRLSize+1)

	tests := []struct {
		name string
		// serve starts the peer that the node fetches from.
		serve   func(t *testing.T) host.Host
		newer   bool
		wantErr bool
		// wantIs, if set, is an error that Fetch's error must wrap.
		wantIs error
	}{
		{"newer CRL from peer", func(t *testing.T) host.Host {
			return joinRevocationPeer(t, issuer.cert, crls[3]).h
		}, true, false, nil},
		{"same CRL from peer", func(t *testing.T) host.Host {
			return joinRevocationPeer(t, issuer.cert, crls[1]).h
		}, false, false, nil},
		{"peer without CRL", func(t *testing.T) host.Host {
			return joinRevocationPeer(t, issuer.cert, nil).h
		}, false, false, nil},
		{"forged CRL from peer", func(t *testing.T) host.Host {
			return serveCRLFrame(t, crlFrame(t, forged))
		}, false, true, nil},
		{"duplicate serial from peer", func(t *testing.T) host.Host {
			return serveCRLFrame(t, crlFrame(t, issuer.signCRL(t, 3, 1, 1).Raw))
		}, false, true, nil},
		{"oversized frame from peer", func(t *testing.T) host.Host {
			return serveCRLFrame(t, oversized)
		}, false, true, protocol.ErrFrameTooLarge},
		{"truncated frame from peer", func(t *testing.T) host.Host {
			frame := crlFrame(t, crls[3].Raw)
			return serveCRLFrame(t, frame[:len(frame)-1])
		}, false, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := joinRevocationPeer(t, issuer.cert, crls[1])
			server := tc.serve(t)
			connectHosts(t, n.h, server)
			newer, err := n.rev.Fetch(context.Background(), server.ID())
			if tc.wantErr != (err != nil) {
				t.Fatalf("Fetch error = %v, want error %t", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Fetch error = %v, want one wrapping %v", err, tc.wantIs)
			}
			if newer != tc.newer {
				t.Errorf("Fetch reported newer = %t, want %t", newer, tc.newer)
			}
			want := crls[1]
			if tc.newer {
				want = crls[3]
				n.expectApplied(t, "node", want)
			}
			if got := n.rev.Current(); !bytes.Equal(got.Raw, want.Raw) {
				t.Errorf("current CRL is %s, want %s", got.Number, want.Number)
			}
			select {
			case got := <-n.applied:
				t.Errorf("node applied CRL %s, want nothing more", got.Number)
			default:
			}
		})
	}
}
