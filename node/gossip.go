package node

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
)

// crlFetchTimeout bounds one CRL exchange with a peer.
const crlFetchTimeout = 10 * time.Second

// RevocationTopic returns the GossipSub topic on which the CA with
// certificate caCert publishes its CRLs: the SHA-256 of the certificate
// in hex, so nodes of different CAs never share a topic.
func RevocationTopic(caCert *x509.Certificate) string {
	sum := sha256.Sum256(caCert.Raw)
	return "skm/revocations/" + hex.EncodeToString(sum[:])
}

// Revocations keeps the newest CRL of one CA and exchanges it with peers:
// over GossipSub, where a validator lets only newer CA-signed CRLs
// through, and over [protocol.CRLID] streams.
type Revocations struct {
	h      host.Host
	caCert *x509.Certificate
	log    *slog.Logger
	ps     *pubsub.PubSub
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	cancel context.CancelFunc
	done   chan struct{}

	// apply is called, one at a time, with each newer CRL accepted.
	apply func(crl *x509.RevocationList, source string)

	applyMu sync.Mutex
	mu      sync.Mutex
	current *x509.RevocationList
}

// JoinRevocations joins caCert's revocation topic on h and serves
// [protocol.CRLID]. current is the newest CRL the caller already has, or
// nil. apply runs for every newer CRL, from gossip, from a peer or from
// [Revocations.Offer].
func JoinRevocations(ctx context.Context, h host.Host, caCert *x509.Certificate, current *x509.RevocationList,
	apply func(*x509.RevocationList, string), log *slog.Logger) (*Revocations, error) {
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("start GossipSub: %w", err)
	}
	r := &Revocations{h: h, caCert: caCert, log: log, ps: ps, apply: apply, current: current, done: make(chan struct{})}
	name := RevocationTopic(caCert)
	if err := ps.RegisterTopicValidator(name, r.validate); err != nil {
		return nil, err
	}
	if r.topic, err = ps.Join(name); err != nil {
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	if r.sub, err = r.topic.Subscribe(); err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", name, err)
	}
	h.SetStreamHandler(protocol.CRLID, r.handleFetch)
	ctx, r.cancel = context.WithCancel(ctx)
	go r.readLoop(ctx)
	return r, nil
}

// Close leaves the topic.
func (r *Revocations) Close() {
	r.h.RemoveStreamHandler(protocol.CRLID)
	r.cancel()
	r.sub.Cancel()
	<-r.done
	r.topic.Close()
}

// Current returns the newest CRL, or nil. A nil r has none.
func (r *Revocations) Current() *x509.RevocationList {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// Number returns the newest CRL's number, or 0 without one.
func (r *Revocations) Number() uint64 {
	if c := r.Current(); c != nil && c.Number.IsUint64() {
		return c.Number.Uint64()
	}
	return 0
}

// validate is the topic validator. It rejects anything that is not a CRL
// signed by the CA, and ignores CRLs that are not newer than the current
// one, so neither is ever forwarded.
func (r *Revocations) validate(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	crl, err := ca.VerifyCRL(m.Data, r.caCert)
	if err != nil {
		r.log.Debug("revocation notice rejected", "from", from.String(), "reason", err.Error())
		return pubsub.ValidationReject
	}
	if !r.isNewer(crl) {
		return pubsub.ValidationIgnore
	}
	// The read loop applies the CRL parsed and verified here, instead of
	// checking its signature a second time.
	m.ValidatorData = crl
	return pubsub.ValidationAccept
}

func (r *Revocations) isNewer(crl *x509.RevocationList) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current == nil || crl.Number.Cmp(r.current.Number) > 0
}

func (r *Revocations) readLoop(ctx context.Context) {
	defer close(r.done)
	for {
		m, err := r.sub.Next(ctx)
		if err != nil {
			return
		}
		source := "gossip from " + m.ReceivedFrom.String()
		if crl, ok := m.ValidatorData.(*x509.RevocationList); ok {
			r.offerVerified(crl, source)
			continue
		}
		if _, err := r.Offer(m.Data, source); err != nil {
			r.log.Debug("revocation notice dropped", "from", m.ReceivedFrom.String(), "reason", err.Error())
		}
	}
}

// Offer verifies a DER CRL and, if it is newer than the current one,
// makes it current and applies it. It reports whether it did.
func (r *Revocations) Offer(der []byte, source string) (bool, error) {
	crl, err := ca.VerifyCRL(der, r.caCert)
	if err != nil {
		return false, err
	}
	return r.offerVerified(crl, source), nil
}

// offerVerified makes crl, which [ca.VerifyCRL] accepted, current and
// applies it if it is newer than the current one.
func (r *Revocations) offerVerified(crl *x509.RevocationList, source string) bool {
	// applyMu makes the check, the swap and apply one step, so CRLs are
	// applied in number order; mu alone guards current for readers.
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	if !r.isNewer(crl) {
		return false
	}
	r.mu.Lock()
	r.current = crl
	r.mu.Unlock()
	r.apply(crl, source)
	return true
}

// Publish sends a new CRL to the topic. The CA calls it for each CRL it
// signs; the CRL reaches its own subscription like anyone else's.
func (r *Revocations) Publish(ctx context.Context, crl *x509.RevocationList) error {
	return r.topic.Publish(ctx, crl.Raw)
}

// PubSub returns the GossipSub router that carries the topic, so that
// other topics can share its connections.
func (r *Revocations) PubSub() *pubsub.PubSub { return r.ps }

// Peers returns the peers known to be subscribed to the topic.
func (r *Revocations) Peers() []peer.ID { return r.topic.ListPeers() }

// handleFetch serves the current CRL to a peer.
func (r *Revocations) handleFetch(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(crlFetchTimeout))
	var der []byte
	if c := r.Current(); c != nil {
		der = c.Raw
	}
	if err := protocol.WriteFrame(s, der); err != nil {
		s.Reset()
	}
}

// Fetch requests peer p's CRL and offers it. It reports whether the
// CRL was newer.
func (r *Revocations) Fetch(ctx context.Context, p peer.ID) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, crlFetchTimeout)
	defer cancel()
	s, err := r.h.NewStream(ctx, p, protocol.CRLID)
	if err != nil {
		return false, err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(crlFetchTimeout))
	s.CloseWrite()
	der, err := protocol.ReadFrame(s, ca.MaxCRLSize)
	if err != nil {
		s.Reset()
		return false, fmt.Errorf("read CRL from %s: %w", p, err)
	}
	if len(der) == 0 {
		return false, nil
	}
	return r.Offer(der, "peer "+p.String())
}
