package sim

import (
	"context"
	"crypto/x509"
	"fmt"
	"runtime"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// quietPause precedes each measured message, so that the duplicates and
// gossip of the message before it are over.
const quietPause = 500 * time.Millisecond

// warmUp waits for the GossipSub mesh to form and checks that the plain
// topic reaches every node. A router grafts mesh peers at its heartbeat,
// choosing among the peers whose subscription it has received. Once
// every host has received those of all its linked peers, two heartbeats
// are enough for the grafts to land.
func warmUp(ctx context.Context, cfg Config, nw *network) error {
	cfg.Progress("waiting for every host to see its peers' subscriptions")
	if err := nw.waitSubscribed(ctx, cfg.Timeout); err != nil {
		return err
	}
	cfg.Progress("waiting two GossipSub heartbeats for the mesh")
	if err := sleep(ctx, 2*pubsub.GossipSubHeartbeatInterval); err != nil {
		return err
	}
	cfg.Progress("sending a warm-up message on the plain topic")
	s, err := measurePlain(ctx, cfg, nw, []byte("skm sim warm-up"))
	if err != nil {
		return err
	}
	if !s.Complete() {
		return fmt.Errorf("warm-up message reached %d of %d nodes in %v", s.Reached, cfg.Nodes, cfg.Timeout)
	}
	return nil
}

// measureRound measures crl on the revocation topic and then its bytes
// on the plain topic.
func measureRound(ctx context.Context, cfg Config, nw *network, crl *x509.RevocationList) (Round, error) {
	rev, err := measureRevocation(ctx, cfg, nw, crl)
	if err != nil {
		return Round{}, err
	}
	plain, err := measurePlain(ctx, cfg, nw, crl.Raw)
	if err != nil {
		return Round{}, err
	}
	return Round{Revocation: rev, Plain: plain, Ratio: ratioOfMax(rev, plain)}, nil
}

// measureRevocation publishes crl from the CA host and records when each
// node applies it.
func measureRevocation(ctx context.Context, cfg Config, nw *network, crl *x509.RevocationList) (Series, error) {
	if err := settle(ctx); err != nil {
		return Series{}, err
	}
	a := newArrivals(cfg.Nodes, crl.Raw)
	nw.revocation.Store(a)
	defer nw.revocation.Store(nil)
	a.begin()
	if err := nw.ca().rev.Publish(ctx, crl); err != nil {
		return Series{}, fmt.Errorf("publish the CRL: %w", err)
	}
	if err := a.wait(ctx, cfg.Timeout); err != nil {
		return Series{}, err
	}
	return newSeries("revocation", a.latencies()), nil
}

// measurePlain publishes data on the plain topic from the CA host and
// records when each node's subscription returns it.
func measurePlain(ctx context.Context, cfg Config, nw *network, data []byte) (Series, error) {
	if err := settle(ctx); err != nil {
		return Series{}, err
	}
	a := newArrivals(cfg.Nodes, data)
	nw.plain.Store(a)
	defer nw.plain.Store(nil)
	a.begin()
	if err := nw.ca().plain.Publish(ctx, data); err != nil {
		return Series{}, fmt.Errorf("publish on %s: %w", plainTopic, err)
	}
	if err := a.wait(ctx, cfg.Timeout); err != nil {
		return Series{}, err
	}
	return newSeries("plain", a.latencies()), nil
}

// settle waits out the traffic of the message before and collects
// garbage, so that both series start from the same state.
func settle(ctx context.Context) error {
	if err := sleep(ctx, quietPause); err != nil {
		return err
	}
	runtime.GC()
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
