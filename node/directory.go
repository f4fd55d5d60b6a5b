package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// Timing of the node's use of the CA directory.
const (
	directoryTimeout = 10 * time.Second
	announceInterval = 10 * time.Minute
	// lookupInterval is the least time between two lookups of one user
	// made because the user's stored addresses did not work.
	lookupInterval = 30 * time.Second
)

// caPeer returns the CA's address as stored at enrollment.
func (n *Node) caPeer() (*peer.AddrInfo, error) { return caPeerFromStore(n.st) }

func caPeerFromStore(st *store.Store) (*peer.AddrInfo, error) {
	raw, err := st.Get(store.Meta, metaCAAddr)
	if err != nil {
		return nil, fmt.Errorf("no CA address in the store: %w", err)
	}
	addr, err := ma.NewMultiaddrBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("stored CA address: %w", err)
	}
	return peer.AddrInfoFromP2pAddr(addr)
}

// askDirectory sends one request to the CA directory.
func (n *Node) askDirectory(ctx context.Context, req protocol.DirectoryRequest) (*protocol.DirectoryResponse, error) {
	ca, err := n.caPeer()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, directoryTimeout)
	defer cancel()
	if err := n.h.Connect(ctx, *ca); err != nil {
		return nil, fmt.Errorf("reach the CA %s: %w", ca.ID, err)
	}
	s, err := n.h.NewStream(ctx, ca.ID, protocol.DirectoryID)
	if err != nil {
		return nil, fmt.Errorf("open directory stream: %w", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(directoryTimeout))
	if err := protocol.WriteJSON(s, req); err != nil {
		s.Reset()
		return nil, err
	}
	s.CloseWrite()
	frame, err := protocol.ReadFrame(s, protocol.MaxDirectoryResponseSize)
	if err != nil {
		s.Reset()
		return nil, fmt.Errorf("read directory response: %w", err)
	}
	return protocol.DecodeDirectoryResponse(frame)
}

// lookupUser requests from the CA directory for user's certificate and addresses
// and, once the certificate verifies, stores them as a contact.
func (n *Node) lookupUser(ctx context.Context, user string) (*Contact, error) {
	resp, err := n.askDirectory(ctx, protocol.DirectoryRequest{Lookup: user})
	if err != nil {
		return nil, err
	}
	cert, err := parseCertificate(resp.Certificate)
	if err != nil {
		return nil, err
	}
	id, err := protocol.CertIdentity(cert)
	if err != nil {
		return nil, err
	}
	if id.User != user {
		return nil, fmt.Errorf("the CA directory returned a certificate for %q, not %q", id.User, user)
	}
	if err := n.verifyPeer(cert, id.PeerID); err != nil && !errors.Is(err, ErrRevoked) {
		return nil, fmt.Errorf("certificate from the CA directory: %w", err)
	}
	var addrs []ma.Multiaddr
	for _, s := range resp.Addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	n.log.Debug("contact from the CA directory", "user", user, "peer", id.PeerID.String(), "addrs", len(addrs))
	return saveContact(n.st, cert, addrs, n.cfg.Now())
}

// announceLoop sends the CA directory the node's listen addresses, at
// start and then every announceInterval, retrying with backoff.
func (n *Node) announceLoop() {
	defer n.wg.Done()
	backoff := minBackoff
	for {
		addrs := n.h.Addrs()
		req := protocol.DirectoryRequest{}
		for _, a := range addrs {
			if len(req.Announce) < protocol.MaxAnnouncedAddrs {
				req.Announce = append(req.Announce, a.String())
			}
		}
		wait := announceInterval
		if _, err := n.askDirectory(n.ctx, req); err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.log.Debug("announce to the CA failed, will retry", "in", backoff, "err", err)
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = minBackoff
			n.log.Debug("addresses announced to the CA", "addrs", len(req.Announce))
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func parseCertificate(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return x509.ParseCertificate(der)
}
