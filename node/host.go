package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
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
	// DHT runs a Kademlia DHT in server mode under the /skm protocol
	// prefix, apart from any public DHT. The host then finds the
	// addresses of a peer it knows only by peer ID, or whose known
	// addresses fail, by asking the DHT.
	DHT bool
	// DHTBootstrap lists the peers the DHT starts from.
	DHTBootstrap []peer.AddrInfo
	// Relays are circuit relay v2 relays the host reserves a slot on, so
	// that peers can reach it through them, with hole punching (DCUtR)
	// to upgrade relayed connections to direct ones.
	Relays []peer.AddrInfo
	// RelayService lets the host relay connections for others, within
	// go-libp2p's default relay v2 limits. It declares the host publicly
	// reachable.
	RelayService bool
	// ForcePrivate declares the host unreachable from outside, so that
	// it reserves relay slots at once instead of waiting to learn it.
	ForcePrivate bool
}

// NewHost starts a libp2p host with TCP and QUIC, Noise and TLS, yamux,
// and a resource manager with per-peer limits for a messaging node. Unless cfg asks for them it runs no
// DHT, reserves no relay and relays for nobody. It never dials on its
// own initiative: no NAT port mapping, no AutoNAT and no built-in
// bootstrap peers or relays. The circuit relay transport is on, which
// lets the host dial a /p2p-circuit address it is given.
func NewHost(cfg HostConfig) (host.Host, error) {
	rm, err := newResourceManager()
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	// SO_REUSEPORT lets two processes listen on one port, so a second
	// node started on a busy port would split its peers' connections with
	// the first. Only hole punching needs it, so it is on only with
	// relays.
	tcpOpts := []any{tcp.DisableReuseport()}
	quicOpts := []quicreuse.Option{quicreuse.DisableReuseport()}
	if len(cfg.Relays) > 0 {
		tcpOpts, quicOpts = nil, nil
	}
	opts := []libp2p.Option{
		libp2p.Identity(cfg.Key),
		libp2p.ResourceManager(rm),
		libp2p.Transport(tcp.NewTCPTransport, tcpOpts...),
		libp2p.Transport(quic.NewTransport),
		libp2p.QUICReuse(quicreuse.NewConnManager, quicOpts...),
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
		libp2p.DisableMetrics(),
		libp2p.UserAgent("skm/" + Version),
	}
	if len(cfg.Listen) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrs(cfg.Listen...))
	}
	var kad *dht.IpfsDHT
	if cfg.DHT {
		opts = append(opts, libp2p.Routing(func(h host.Host) (routing.PeerRouting, error) {
			var err error
			kad, err = dht.New(h,
				dht.Mode(dht.ModeServer),
				dht.ProtocolPrefix("/skm"),
				dht.DisableProviders(),
				dht.DisableValues(),
				dht.BootstrapPeers(cfg.DHTBootstrap...))
			return kad, err
		}))
	}
	if len(cfg.Relays) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(cfg.Relays), libp2p.EnableHolePunching())
	}
	if cfg.RelayService {
		// go-libp2p starts the relay service only on a host it believes
		// publicly reachable, and skm runs no AutoNAT to learn that: a
		// user who asks for the service is taken at their word.
		opts = append(opts, libp2p.EnableRelayService(), libp2p.ForceReachabilityPublic())
	}
	if cfg.ForcePrivate {
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	if kad != nil {
		// The routed host does not own its router, so closing the host
		// must also close the DHT.
		return dhtHost{Host: h, dht: kad}, nil
	}
	return h, nil
}

type dhtHost struct {
	host.Host
	dht *dht.IpfsDHT
}

func (h dhtHost) Close() error {
	h.dht.Close()
	return h.Host.Close()
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
