package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	mrand "math/rand/v2"
	"os"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// spareCertificates is the number of certificates the CA issues and
// never revokes, besides the one it revokes in each round, so that the
// CRL lists only some of the certificates, as a real CA's does.
const spareCertificates = 2

// RunRevocation builds the network that cfg describes, measures the
// rounds on it and stops it. The CA lives in a store in a new temporary
// directory, which is removed before it returns. A series that misses
// nodes at the timeout is still returned, with NotReached for those
// nodes.
func RunRevocation(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dir, err := os.MkdirTemp("", "skm-sim-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	a, st, err := newAuthority(dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	current, err := a.CRL()
	if err != nil {
		return nil, err
	}
	serials, err := issueCertificates(a, cfg.Rounds+spareCertificates)
	if err != nil {
		return nil, err
	}

	rng := mrand.New(mrand.NewPCG(cfg.Seed, 0))
	links := append(topology(cfg.Nodes, cfg.Degree, rng), caLinks(cfg.Nodes, cfg.Degree, rng)...)
	cfg.Progress(fmt.Sprintf("starting %d nodes and the CA host with %d links", cfg.Nodes, len(links)))
	nw, err := startNetwork(ctx, cfg.Nodes, cfg.Latency, a.PeerKey(), a.Certificate(), current, links)
	if err != nil {
		return nil, err
	}
	defer nw.close()
	if err := warmUp(ctx, cfg, nw); err != nil {
		return nil, err
	}

	res := &Result{Nodes: cfg.Nodes, Degree: cfg.Degree, Latency: cfg.Latency, Seed: cfg.Seed, Links: len(links)}
	for i := range cfg.Rounds {
		cfg.Progress(fmt.Sprintf("round %d of %d: revoking a certificate and publishing the CRL", i+1, cfg.Rounds))
		crl, err := a.Revoke(serials[i], ca.ReasonKeyCompromise)
		if err != nil {
			return nil, err
		}
		res.CRLBytes = len(crl.Raw)
		round, err := measureRound(ctx, cfg, nw, crl)
		if err != nil {
			return nil, err
		}
		res.Rounds = append(res.Rounds, round)
	}
	cfg.Progress("stopping the hosts")
	res.summarize()
	return res, nil
}

// summarize sets the series and ratio of r from its rounds.
func (r *Result) summarize() {
	revocations := make([]Series, len(r.Rounds))
	plains := make([]Series, len(r.Rounds))
	for i, round := range r.Rounds {
		revocations[i], plains[i] = round.Revocation, round.Plain
	}
	r.Revocation = medianSeries("revocation", revocations)
	r.Plain = medianSeries("plain", plains)
	r.Ratio = ratioOfMax(r.Revocation, r.Plain)
}

// newAuthority creates an open CA in a store in dir, with a cheap KDF
// because the passphrase protects nothing here.
func newAuthority(dir string) (*ca.Authority, *store.Store, error) {
	pass := make([]byte, 32)
	rand.Read(pass)
	st, err := store.Create(dir, pass, &store.Options{KDF: &store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		return nil, nil, err
	}
	a, err := ca.Init(st, "skm sim CA", ca.Config{Open: true})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return a, st, nil
}

// issueCertificates has the CA certify n users, each on a new libp2p
// peer ID, and returns the serials. The users need no host: only their
// revocations travel.
func issueCertificates(a *ca.Authority, n int) ([]string, error) {
	serials := make([]string, 0, n)
	for i := range n {
		peerKey, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		id, err := peer.IDFromPrivateKey(peerKey)
		if err != nil {
			return nil, err
		}
		user := protocol.Identity{User: fmt.Sprintf("user%d", i), KeyVersion: 1, PeerID: id}
		cert, err := issue(a, user)
		if err != nil {
			return nil, fmt.Errorf("issue a certificate to %s: %w", user.User, err)
		}
		serials = append(serials, ca.SerialString(cert.SerialNumber))
	}
	return serials, nil
}

// issue has a certify id: it builds a CSR with a new key and passes it
// to [ca.Authority.Issue].
func issue(a *ca.Authority, id protocol.Identity) (*x509.Certificate, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: id.User}, URIs: id.URIs()}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	return a.Issue(ca.Request{Peer: id.PeerID, CSR: csr})
}
