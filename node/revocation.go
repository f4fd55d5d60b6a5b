package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/store"
)

const certCRL = "crl" // store.Certs: newest verified CRL, DER

// ErrRevoked is returned when a certificate that an operation needs is
// revoked.
var ErrRevoked = errors.New("certificate revoked")

// loadCRL returns the CRL stored in st, or nil if there is none. A stored
// CRL that no longer verifies is dropped with a log line: a fresh one
// comes from the CA or a peer.
func (n *Node) loadCRL() *x509.RevocationList {
	der, err := n.st.Get(store.Certs, certCRL)
	if err != nil {
		return nil
	}
	crl, err := ca.VerifyCRL(der, n.Identity().CACert)
	if err != nil {
		n.log.Error("stored CRL does not verify; waiting for a fresh one", "err", err)
		return nil
	}
	return crl
}

// startRevocations joins the CA's revocation topic and fetches the CA's
// CRL in the background.
func (n *Node) startRevocations() error {
	r, err := JoinRevocations(n.ctx, n.h, n.Identity().CACert, n.loadCRL(), n.applyRevocation, n.log)
	if err != nil {
		return err
	}
	n.rev = r
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.fetchCRLFromCA()
	}()
	return nil
}

// crlRefreshInterval is how often a node requests the CA's CRL beyond
// gossip and handshakes. Gossip misses a node that was cut off while
// idle, and a revocation made while the CA was not serving; this bounds
// how late such a node learns of it. One small stream a minute per node
// costs the CA little.
const crlRefreshInterval = time.Minute

// fetchCRLFromCA gets the CA's newest CRL at start and then every
// crlRefreshInterval, retrying with backoff while the CA is unreachable.
func (n *Node) fetchCRLFromCA() {
	backoff := minBackoff
	for n.ctx.Err() == nil {
		ca, err := n.caPeer()
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, directoryTimeout)
		err = n.h.Connect(ctx, *ca)
		if err == nil {
			_, err = n.rev.Fetch(ctx, ca.ID)
		}
		cancel()
		wait := crlRefreshInterval
		if err != nil {
			n.log.Debug("fetch CRL from the CA failed, will retry", "in", backoff, "err", err)
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = minBackoff
		}
		select {
		case <-n.ctx.Done():
		case <-time.After(wait):
		}
	}
}

// applyRevocation stores a newer verified CRL and enforces it at once:
// sessions under a revoked certificate are closed.
func (n *Node) applyRevocation(crl *x509.RevocationList, source string) {
	if err := n.st.Put(store.Certs, certCRL, crl.Raw); err != nil {
		n.log.Error("store CRL", "crl_number", crl.Number.String(), "err", err)
	}
	n.log.Info("revocation list applied", "crl_number", crl.Number.String(),
		"revoked", len(crl.RevokedCertificateEntries), "source", source)
	if e := revokedIn(crl, n.Identity().Cert); e != nil && e.ReasonCode != ca.ReasonSuperseded {
		n.log.Error("this node's own certificate is revoked: peers refuse it; ask the CA operator for a token and run skm rotate --token TOKEN",
			"serial", ca.SerialString(e.SerialNumber), "reason", ca.ReasonName(e.ReasonCode))
	}
	// A superseded certificate's holder rotated on purpose: its sessions
	// drain, so frames in flight are still read. Any other revocation
	// ends them at once.
	var closing []*session
	n.mu.Lock()
	for _, list := range n.sessions {
		for _, s := range list {
			if e := revokedIn(crl, s.secure.PeerCertificate()); e != nil && e.ReasonCode != ca.ReasonSuperseded {
				closing = append(closing, s)
			}
		}
	}
	n.mu.Unlock()
	for _, s := range closing {
		n.log.Warn("session closed: peer certificate revoked", "peer", s.peerID.String(), "user", s.peerUser)
		s.stream.Reset()
	}
	n.drainSessions(func(s *session) bool {
		e := revokedIn(crl, s.secure.PeerCertificate())
		return e != nil && e.ReasonCode == ca.ReasonSuperseded
	})
	n.publish(Event{Type: "revocation"})
}

// revokedIn returns the CRL entry of cert, or nil.
func revokedIn(crl *x509.RevocationList, cert *x509.Certificate) *x509.RevocationListEntry {
	if crl == nil {
		return nil
	}
	for i := range crl.RevokedCertificateEntries {
		e := &crl.RevokedCertificateEntries[i]
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return e
		}
	}
	return nil
}

// checkRevoked returns an error wrapping [ErrRevoked] if the newest CRL
// lists cert.
func (n *Node) checkRevoked(cert *x509.Certificate) error {
	if n.rev == nil {
		return nil
	}
	if e := revokedIn(n.rev.Current(), cert); e != nil {
		return fmt.Errorf("%w: serial %s, %s, at %s", ErrRevoked, ca.SerialString(cert.SerialNumber),
			ca.ReasonName(e.ReasonCode), e.RevocationTime.UTC().Format(time.RFC3339))
	}
	return nil
}

// syncCRL fetches the peer's CRL when the handshake showed that the peer
// has a newer one.
func (n *Node) syncCRL(p peer.ID, peerNumber uint64) {
	if n.rev == nil || peerNumber <= n.rev.Number() {
		return
	}
	n.goTracked(func() {
		if _, err := n.rev.Fetch(n.ctx, p); err != nil {
			n.log.Debug("fetch CRL from peer", "peer", p.String(), "err", err)
		}
	})
}
