package node_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
)

// These tests flood a victim node while an honest node sends it a
// message, which the victim must acknowledge. Once the attackers are
// gone, the victim's streams, goroutines and heap must return close to
// where they were before the flood.

// Size of each flood.
const (
	floodStreamCount  = 20000
	floodStreamers    = 32
	floodJunkCount    = 3000
	floodStallers     = 50
	floodSinkMessages = 8
)

// Slack over the baseline that the victim's footprint may keep after a
// flood. The goroutines include the test's own and a delivery worker
// that the victim keeps for each user it has messages for. The heap
// includes the victim's log, which holds a line per rejected handshake
// or gossip message, and GossipSub's two-minute cache of seen message
// IDs.
const (
	goroutineSlack = 10
	streamSlack    = 2
	heapSlack      = 16 << 20
)

// floodStartTimeout bounds how long a flood may take to reach the size
// at which the honest node starts.
const floodStartTimeout = time.Minute

// settleTimeout bounds how long the victim's footprint may take to
// return to its baseline after a flood.
const settleTimeout = 30 * time.Second

// footprint is what a victim node holds at one moment.
type footprint struct {
	goroutines int
	conns      int
	// streams counts the streams on the victim's connections.
	streams int
	// system and transient count the streams in the resource
	// manager's system and transient scopes.
	system, transient int
	heapInuse         uint64
}

func (f footprint) String() string {
	return fmt.Sprintf("%d goroutines, %d conns, %d streams (rcmgr system %d, transient %d), heap in use %.1f MiB",
		f.goroutines, f.conns, f.streams, f.system, f.transient, float64(f.heapInuse)/(1<<20))
}

// measure returns the victim's footprint. With gc set, it collects
// garbage first, so that heapInuse counts live memory only.
func measure(victim *node.Node, gc bool) footprint {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f := footprint{goroutines: runtime.NumGoroutine(), heapInuse: ms.HeapInuse}
	net := victim.Host().Network()
	for _, c := range net.Conns() {
		f.conns++
		f.streams += len(c.GetStreams())
	}
	// The view functions return only what their callbacks return.
	rm := net.ResourceManager()
	rm.ViewSystem(func(s network.ResourceScope) error {
		st := s.Stat()
		f.system = st.NumStreamsInbound + st.NumStreamsOutbound
		return nil
	})
	rm.ViewTransient(func(s network.ResourceScope) error {
		st := s.Stat()
		f.transient = st.NumStreamsInbound + st.NumStreamsOutbound
		return nil
	})
	return f
}

// within reports whether f is no more than the slack above base.
func (f footprint) within(base footprint) bool {
	return f.goroutines <= base.goroutines+goroutineSlack &&
		f.streams <= base.streams+streamSlack &&
		f.system <= base.system+streamSlack &&
		f.transient <= base.transient+streamSlack &&
		f.heapInuse <= base.heapInuse+heapSlack
}

// settle polls the victim's footprint until it is within the slack of
// base, and fails the test if it does not get there.
func settle(t *testing.T, victim *node.Node, base footprint) footprint {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		f := measure(victim, true)
		if f.within(base) {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("the victim's footprint did not return to its baseline:\nbefore: %s\nafter:  %s", base, f)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// peakSampler records the victim's largest footprint while a flood runs.
type peakSampler struct {
	stop chan struct{}
	done chan struct{}
	peak footprint
}

func samplePeak(victim *node.Node) *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			f := measure(victim, false)
			p.peak.goroutines = max(p.peak.goroutines, f.goroutines)
			p.peak.conns = max(p.peak.conns, f.conns)
			p.peak.streams = max(p.peak.streams, f.streams)
			p.peak.system = max(p.peak.system, f.system)
			p.peak.transient = max(p.peak.transient, f.transient)
			p.peak.heapInuse = max(p.peak.heapInuse, f.heapInuse)
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// finish stops the sampler and returns the peak.
func (p *peakSampler) finish() footprint {
	close(p.stop)
	<-p.done
	return p.peak
}

// hostileHost starts a dial-only libp2p host with no resource manager,
// so that its own limits never slow a flood, and connects it to the
// victim. The host closes when the test ends.
func hostileHost(t *testing.T, victim *node.Node) host.Host {
	t.Helper()
	h, err := dialHostile(newPeerKey(t), victim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func dialHostile(key p2pcrypto.PrivKey, victim *node.Node) (host.Host, error) {
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("start a hostile host: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), attackTimeout)
	defer cancel()
	info := peer.AddrInfo{ID: victim.Identity().PeerID, Addrs: victim.Host().Addrs()}
	if err := h.Connect(ctx, info); err != nil {
		h.Close()
		return nil, fmt.Errorf("connect a hostile host to the victim: %w", err)
	}
	return h, nil
}

// hostileHosts starts n hostile hosts at once, as hostileHost does.
func hostileHosts(t *testing.T, victim *node.Node, n int) []host.Host {
	t.Helper()
	hosts := make([]host.Host, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		key := newPeerKey(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hosts[i], errs[i] = dialHostile(key, victim)
		}()
	}
	wg.Wait()
	for _, h := range hosts {
		if h != nil {
			t.Cleanup(func() { h.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return hosts
}

// waitCount waits until count returns at least n, failing the test after
// floodStartTimeout.
func waitCount(t *testing.T, what string, n int64, count func() int64) {
	t.Helper()
	deadline := time.Now().Add(floodStartTimeout)
	for count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d after %s, want %d", what, count(), floodStartTimeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// floodAttack runs one flood. It returns once the attackers are gone,
// after calling honest while the flood is under way. It returns a
// summary of what the attackers did.
type floodAttack func(t *testing.T, tb *testbed, honest func()) string

func TestFlood(t *testing.T) {
	tb := newTestbed(t)
	// The first honest session creates what every later one reuses: the
	// contact, a delivery worker and the peerstore entries.
	tb.checkServes(t)
	tests := []struct {
		name   string
		attack floodAttack
	}{
		{"many short streams", floodShortStreams},
		{"session that never reads", floodNeverReads},
		{"junk on revocation topic", floodRevocationJunk},
		{"fifty stalled handshakes", floodStalledHandshakes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := measure(tb.victim, true)
			logBefore := tb.log.Len()
			var summary string
			var peak footprint
			// The attack runs as a subtest, so its hosts, closed by
			// t.Cleanup, are gone before the footprint is compared.
			t.Run("attack", func(t *testing.T) {
				sampler := samplePeak(tb.victim)
				defer func() { peak = sampler.finish() }()
				summary = tc.attack(t, tb, func() {
					start := time.Now()
					tb.checkServes(t)
					t.Logf("honest message delivered during the flood in %s", time.Since(start).Round(time.Millisecond))
				})
			})
			if t.Failed() {
				return
			}
			after := settle(t, tb.victim, base)
			t.Logf("attack: %s", summary)
			t.Logf("before: %s", base)
			t.Logf("peak:   %s", peak)
			t.Logf("after:  %s", after)
			t.Logf("victim log grew by %d bytes", tb.log.Len()-logBefore)
		})
	}
}

// floodShortStreams opens floodStreamCount streams from one peer, on the
// session protocol and others, each closed or reset at once.
func floodShortStreams(t *testing.T, tb *testbed, honest func()) string {
	h := hostileHost(t, tb.victim)
	victimID := tb.victim.Identity().PeerID
	protocols := []libp2pprotocol.ID{
		protocol.SessionID, protocol.CRLID, protocol.StatusID, protocol.DirectoryID,
		identify.ID, ping.ID, "/skm/no-such-protocol/1.0.0",
	}
	hello := firstMessage()

	var next, opened, refused atomic.Int64
	var honestDone atomic.Bool
	var wg sync.WaitGroup
	mark := tb.log.Len()
	began := time.Now()
	for range floodStreamers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > floodStreamCount && honestDone.Load() {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), attackTimeout)
				s, err := h.NewStream(ctx, victimID, protocols[i%int64(len(protocols))])
				cancel()
				if err != nil {
					refused.Add(1)
					continue
				}
				opened.Add(1)
				s.Write(hello)
				if i%2 == 0 {
					s.Reset()
				} else {
					s.Close()
				}
			}
		}()
	}
	// The honest node starts once the flood is well under way, and the
	// flood goes on until the honest node is done.
	waitCount(t, "streams opened before the honest node starts", floodStreamCount/20, next.Load)
	honest()
	honestDone.Store(true)
	wg.Wait()
	total := opened.Load() + refused.Load()
	return fmt.Sprintf("%d streams in %s over %d protocols: %d opened, %d refused; "+
		"victim logged %d rejected handshakes and %d rate-limit warnings",
		total, time.Since(began).Round(time.Millisecond), len(protocols), opened.Load(), refused.Load(),
		countLines(tb, mark, "peer rejected"), countLines(tb, mark, "peer rate-limited"))
}

// floodNeverReads completes a session and then never reads from it. The
// attacker writes data frames, which the victim acknowledges, and the
// victim queues large messages for it. The attacker reads neither, so its
// receive window fills and the victim's writes on that session block.
// The victim must serve others meanwhile, and end the session when its
// write timeout expires.
func floodNeverReads(t *testing.T, tb *testbed, honest func()) string {
	_, id := tb.ca.enrollUser(t, "sink")
	r := openRogueSession(t, tb.victim, id)
	// The attacker's own deadline must outlast the victim's write
	// timeout, so that it is the victim that ends the session.
	r.stream.SetDeadline(time.Now().Add(4 * attackTimeout))

	big := strings.Repeat("x", node.MaxTextSize)
	for range floodSinkMessages {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, err := tb.victim.Send(ctx, "sink", big)
		cancel()
		if err != nil {
			t.Fatalf("victim's Send to the sink: %v", err)
		}
	}

	var written atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			body, _ := dataBody(t, fmt.Sprintf("unread %d", i))
			if err := r.secure.WriteFrame(r.stream, protocol.FrameData, body); err != nil {
				writeErr <- err
				return
			}
			written.Add(1)
		}
	}()

	// The victim is stuck once it stops storing the frames it was sent.
	stored := func() int { return len(received(t, tb.victim, "sink")) }
	last := -1
	waitFor(t, "the victim to stop reading the sink's session", func() bool {
		n := stored()
		stuck := n == last && int64(n) < written.Load()
		last = n
		if !stuck {
			time.Sleep(500 * time.Millisecond)
		}
		return stuck
	})
	storedBefore := stored()
	mark := tb.log.Len()
	honest()
	storedAfter := stored()
	if storedAfter != storedBefore {
		t.Logf("the victim read the sink's session during the honest check: %d frames stored, then %d", storedBefore, storedAfter)
	}
	if lines := tb.reports(mark, id.PeerID); len(lines) != 0 {
		t.Logf("the victim ended the sink's session before the honest check finished:\n%s", strings.Join(lines, "\n"))
	}

	var err error
	select {
	case err = <-writeErr:
	case <-time.After(4 * attackTimeout):
		t.Fatal("the victim never ended the session of a peer that does not read")
	}
	checkRejected(t, err)
	return fmt.Sprintf("sink wrote %d data frames; victim stored %d and queued %d messages of %d bytes for it; "+
		"victim's reports of the sink: %q", written.Load(), stored(), floodSinkMessages, len(big), tb.reports(mark, id.PeerID))
}

// floodRevocationJunk publishes junk on the victim's revocation topic
// from a bare GossipSub router with no validator.
func floodRevocationJunk(t *testing.T, tb *testbed, honest func()) string {
	h := hostileHost(t, tb.victim)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatalf("start GossipSub: %v", err)
	}
	topic, err := ps.Join(node.RevocationTopic(tb.victim.Identity().CACert))
	if err != nil {
		t.Fatalf("join the revocation topic: %v", err)
	}
	t.Cleanup(func() { topic.Close() })
	waitTopicPeers(t, "the junk publisher", topic.ListPeers, tb.victim.Identity().PeerID)

	// Junk: random bytes of many sizes, and a well-formed CRL that a
	// foreign CA signed.
	foreign := newCRLIssuer(t).numberedCRL(t, 3).Raw
	junk := func(i int) []byte {
		switch {
		case i%10 == 0:
			return foreign
		case i%500 == 1:
			return randomBytes(64 << 10)
		default:
			return randomBytes(1 + i%500)
		}
	}

	mark := tb.log.Len()
	var published, failed atomic.Int64
	var honestDone atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < floodJunkCount || !honestDone.Load(); i++ {
			if err := topic.Publish(ctx, junk(i)); err != nil {
				failed.Add(1)
				continue
			}
			published.Add(1)
		}
	}()
	waitCount(t, "junk messages before the honest node starts", floodJunkCount/10, published.Load)
	honest()
	honestDone.Store(true)
	<-done

	// Rejected junk shows as one debug line each; GossipSub may drop
	// some before validation when its validation queue is full.
	rejected := 0
	waitFor(t, "the victim to reject junk", func() bool {
		rejected = countLines(tb, mark, "revocation notice rejected")
		return rejected > 0
	})
	if n := countLines(tb, mark, "revocation list applied"); n != 0 {
		t.Errorf("the victim applied %d CRLs from junk", n)
	}
	return fmt.Sprintf("published %d junk messages (%d failed to publish); victim logged %d rejections",
		published.Load(), failed.Load(), rejected)
}

// floodStalledHandshakes has floodStallers peers open session streams
// and stall, half before and half after handshake message 1. Each opens
// a new stream when the victim ends the last, until the honest node is
// done.
func floodStalledHandshakes(t *testing.T, tb *testbed, honest func()) string {
	var honestDone atomic.Bool
	var stalls, resets atomic.Int64
	var mu sync.Mutex
	var unexpected []error
	var started, wg sync.WaitGroup
	started.Add(floodStallers)
	for i, h := range hostileHosts(t, tb.victim, floodStallers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := true; first || !honestDone.Load(); first = false {
				err := stall(h, tb.victim, i%2 == 0)
				if first {
					started.Done()
				}
				stalls.Add(1)
				if errors.Is(err, network.ErrReset) {
					resets.Add(1)
					continue
				}
				mu.Lock()
				unexpected = append(unexpected, err)
				mu.Unlock()
			}
		}()
	}

	// Every staller has had one stream ended by the victim's handshake
	// timeout, and is stalling again.
	started.Wait()
	honest()
	honestDone.Store(true)
	wg.Wait()

	if len(unexpected) != 0 {
		t.Errorf("%d of %d stalled handshakes ended other than by a reset from the victim, first with %v",
			len(unexpected), stalls.Load(), unexpected[0])
	}
	return fmt.Sprintf("%d peers stalled %d handshakes; the victim reset %d", floodStallers, stalls.Load(), resets.Load())
}

// stall opens a session stream from h, writes handshake message 1 if
// sendFirst is set, and waits for the victim to end the stream.
func stall(h host.Host, victim *node.Node, sendFirst bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), attackTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, victim.Identity().PeerID, protocol.SessionID)
	if err != nil {
		return err
	}
	s.SetDeadline(time.Now().Add(attackTimeout))
	if sendFirst {
		if _, err := s.Write(firstMessage()); err != nil {
			return err
		}
	}
	return readToEnd(s)
}

// countLines counts the victim's log lines after mark that contain text.
func countLines(tb *testbed, mark int, text string) int {
	n := 0
	for _, line := range tb.log.linesSince(mark) {
		if strings.Contains(line, text) {
			n++
		}
	}
	return n
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
