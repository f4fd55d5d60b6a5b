package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Version is the skm release, reported in the libp2p user agent and in
// logs. The build overrides it with -ldflags.
var Version = "0.1.0-dev"

// HostConfig configures a libp2p host for a node or a CA.
type HostConfig struct {
	// Key is the host's identity.
	Key crypto.PrivKey
	// Listen lists the addresses to listen on. None means the host only
	// dials.
	Listen []ma.Multiaddr
}

// NewHost starts a libp2p host with TCP and QUIC, Noise and TLS, yamux,
// and the default resource manager. It enables nothing that dials on its
// own: no relay, no NAT port mapping, no AutoNAT and no bootstrap peers.
func NewHost(cfg HostConfig) (host.Host, error) {
	opts := []libp2p.Option{
		libp2p.Identity(cfg.Key),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.UserAgent("skm/" + Version),
	}
	if len(cfg.Listen) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrs(cfg.Listen...))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, nil
}

// FullAddrs returns h's listen addresses with its /p2p/ peer ID appended,
// the form another host dials.
func FullAddrs(h host.Host) []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}
