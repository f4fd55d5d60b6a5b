package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// rotationOverlap is how long sessions made under the previous key
// version are still read after a rotation, so that frames already in
// flight are decrypted rather than lost.
const rotationOverlap = 30 * time.Second

// Rotate generates signing key version N+1, has the CA certify it with
// a continuity signature by version N, and makes it current. The CA
// revokes version N as superseded. Sessions made under version N are
// closed for writing and read for a short overlap. New sessions present
// the new certificate, and unacknowledged messages stay queued until
// they go out on those.
//
// With a token from the CA operator, the request carries the token
// instead of the continuity signature: the way back for a node whose
// certificate was revoked, whose key can no longer vouch for anything.
func (n *Node) Rotate(ctx context.Context, token string) (*Identity, error) {
	n.rotateMu.Lock()
	defer n.rotateMu.Unlock()
	id, err := rotate(ctx, n.st, n.h, token)
	if err != nil {
		return nil, err
	}
	n.id.Store(id)
	n.log.Info("key rotated", "key_version", id.KeyVersion, "serial", ca.SerialString(id.Cert.SerialNumber),
		"fingerprint", protocol.Fingerprint(id.Cert))
	n.drainSessions(func(*session) bool { return true })
	return id, nil
}

func rotate(ctx context.Context, st *store.Store, h host.Host, token string) (*Identity, error) {
	id, err := LoadIdentity(st)
	if err != nil {
		return nil, err
	}
	if id.Cert == nil {
		return nil, ErrNotEnrolled
	}
	caInfo, err := caPeerFromStore(st)
	if err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	next := *id
	next.KeyVersion, next.SigningKey, next.Cert = id.KeyVersion+1, key, nil
	csr, err := createCSR(&next)
	if err != nil {
		return nil, err
	}
	req := protocol.EnrollRequest{CSR: csr, Token: token}
	if token == "" {
		req.Continuity = ed25519.Sign(id.SigningKey, ca.ContinuityMessage(csr))
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultEnrollTimeout)
	defer cancel()
	cert, caCert, err := requestCertificate(ctx, h, *caInfo, req)
	if err != nil {
		return nil, fmt.Errorf("rotate to key version %d: %w", next.KeyVersion, err)
	}
	if err := checkIssued(&next, caInfo.ID, cert, caCert); err != nil {
		return nil, fmt.Errorf("the CA's response failed verification: %w", err)
	}
	seed := key.Seed()
	defer clear(seed)
	err = st.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Keys, signingKeyName(next.KeyVersion), seed); err != nil {
			return err
		}
		if err := tx.Put(store.Certs, leafCertName(next.KeyVersion), cert.Raw); err != nil {
			return err
		}
		if err := tx.Put(store.Meta, metaKeyVersion, []byte(strconv.Itoa(next.KeyVersion))); err != nil {
			return err
		}
		// The superseded key is revoked; nothing needs it any more.
		return tx.Delete(store.Keys, signingKeyName(id.KeyVersion))
	})
	if err != nil {
		return nil, err
	}
	next.Cert = cert
	return &next, nil
}

// drainSessions stops writing on every session that match selects: each
// gets a close frame and is then read for rotationOverlap at most, so
// frames the peer already sent are still decrypted. New messages go out
// on a new session.
func (n *Node) drainSessions(match func(*session) bool) {
	n.mu.Lock()
	var drain []*session
	for _, list := range n.sessions {
		for _, s := range list {
			if match(s) && s.draining.CompareAndSwap(false, true) {
				drain = append(drain, s)
			}
		}
	}
	n.mu.Unlock()
	for _, s := range drain {
		n.wakeWorker(s.peerUser)
		// One goroutine a session, so that a peer that does not read
		// holds up only its own close frame, not the others'.
		n.goTracked(func() {
			s.write(protocol.FrameClose, nil)
			s.stream.CloseWrite()
			s.stream.SetReadDeadline(time.Now().Add(rotationOverlap))
		})
	}
}

// renewLoop rotates the key when two thirds of the certificate's
// lifetime have passed, retrying with backoff, until the node stops.
func (n *Node) renewLoop() {
	defer n.wg.Done()
	backoff := minBackoff
	for {
		cert := n.Identity().Cert
		due := cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) * 2 / 3)
		wait := min(due.Sub(n.cfg.Now()), time.Minute)
		if wait <= 0 {
			if err := n.checkRevoked(cert); err != nil {
				n.log.Error("cannot renew a revoked certificate: ask the CA operator for a token and run skm rotate --token TOKEN", "err", err)
				return
			}
			if _, err := n.Rotate(n.ctx, ""); err != nil {
				n.log.Warn("certificate renewal failed, will retry", "in", backoff, "err", err)
				wait = backoff
				backoff = min(2*backoff, maxBackoff)
			} else {
				backoff = minBackoff
				continue
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// SelfRevoke requests that the CA revoke the node's current certificate, with
// a request signed by the certified key, and returns the number of the
// CRL that lists it.
func (n *Node) SelfRevoke(ctx context.Context, reason int) (string, error) {
	number, err := selfRevoke(ctx, n.h, n.st, n.Identity(), reason)
	if err != nil {
		return "", err
	}
	n.log.Warn("own certificate revoked", "serial", ca.SerialString(n.Identity().Cert.SerialNumber),
		"reason", ca.ReasonName(reason), "crl_number", number)
	return number, nil
}

func selfRevoke(ctx context.Context, h host.Host, st *store.Store, id *Identity, reason int) (string, error) {
	caInfo, err := caPeerFromStore(st)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultEnrollTimeout)
	defer cancel()
	if err := h.Connect(ctx, *caInfo); err != nil {
		return "", fmt.Errorf("cannot reach the CA %s: %w", caInfo.ID, err)
	}
	s, err := h.NewStream(ctx, caInfo.ID, protocol.RevokeID)
	if err != nil {
		return "", err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(DefaultEnrollTimeout))
	req := protocol.RevokeRequest{
		Certificate: id.Cert.Raw,
		Reason:      reason,
		Signature:   ed25519.Sign(id.SigningKey, protocol.RevokeMessage(id.Cert.Raw, reason)),
	}
	if err := protocol.WriteJSON(s, req); err != nil {
		s.Reset()
		return "", err
	}
	s.CloseWrite()
	frame, err := protocol.ReadFrame(s, protocol.MaxRevokeResponseSize)
	if err != nil {
		s.Reset()
		return "", fmt.Errorf("read revocation response: %w", err)
	}
	resp, err := protocol.DecodeRevokeResponse(frame)
	if err != nil {
		return "", fmt.Errorf("the CA did not revoke the certificate: %w", err)
	}
	return resp.CRLNumber, nil
}
