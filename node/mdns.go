package node

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// MDNSServiceName returns the DNS-SD service under which the nodes of the
// CA with certificate caCert find each other: "_skm-" and 10 hex digits
// of the certificate's SHA-256, within the 15 characters RFC 6335 allows
// a service name. Demos under different CAs do not see each other.
func MDNSServiceName(caCert *x509.Certificate) string {
	sum := sha256.Sum256(caCert.Raw)
	return "_skm-" + hex.EncodeToString(sum[:5]) + "._udp"
}

// StartMDNS announces h on the local networks and calls found for every
// peer announcing the same service. Only addresses of interfaces that are
// up, carry multicast and are neither loopback nor point-to-point are
// announced, so a peer on the LAN never receives 127.0.0.1 or a tunnel's
// address, whichever interface comes first.
func StartMDNS(h host.Host, serviceName string, found func(peer.AddrInfo)) (io.Closer, error) {
	s := mdns.NewMdnsService(lanHost{h}, serviceName, notifee(found))
	if err := s.Start(); err != nil {
		return nil, fmt.Errorf("start mDNS: %w", err)
	}
	return s, nil
}

// mdnsDialDelay is the head start that the side with the smaller peer
// ID gets to dial a peer both found by mDNS.
const mdnsDialDelay = 2 * time.Second

type notifee func(peer.AddrInfo)

func (f notifee) HandlePeerFound(info peer.AddrInfo) { f(info) }

// lanHost is h as the mDNS service sees it: its network reports only LAN
// addresses. mdns reads no other method of the host that differs.
type lanHost struct{ host.Host }

func (l lanHost) Network() network.Network { return lanNetwork{l.Host.Network()} }

type lanNetwork struct{ network.Network }

func (l lanNetwork) InterfaceListenAddresses() ([]ma.Multiaddr, error) {
	addrs, err := l.Network.InterfaceListenAddresses()
	if err != nil {
		return nil, err
	}
	lan, err := lanIPs()
	if err != nil {
		return nil, err
	}
	out := addrs[:0:0]
	for _, a := range addrs {
		ip, err := manet.ToIP(a)
		if err == nil && lan[ip.String()] {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no listen address on an interface with multicast: mDNS needs one (listening on %v)", addrs)
	}
	return out, nil
}

// lanIPs returns the addresses of the interfaces that can reach a LAN
// with multicast.
func lanIPs() (map[string]bool, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, iface := range ifaces {
		f := iface.Flags
		if f&net.FlagUp == 0 || f&net.FlagMulticast == 0 || f&net.FlagLoopback != 0 || f&net.FlagPointToPoint != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipnet, ok := a.(*net.IPNet); ok && !ipnet.IP.IsLoopback() {
				out[ipnet.IP.String()] = true
			}
		}
	}
	return out, nil
}

// onMDNSPeer connects to a peer that mDNS found: a session with a node,
// a plain connection with the CA so that revocations reach this node.
func (n *Node) onMDNSPeer(info peer.AddrInfo) {
	if info.ID == n.h.ID() || n.ctx.Err() != nil {
		return
	}
	if ca, err := n.caPeer(); err == nil && ca.ID == info.ID {
		if n.h.Network().Connectedness(info.ID) != network.Connected {
			n.h.Connect(n.ctx, info)
		}
		return
	}
	n.mu.Lock()
	n.mdnsPeers[info.ID] = info
	n.mu.Unlock()
	n.dialFound(info, slog.LevelInfo, "peer found by mDNS")
}

// dialFound starts a session with a peer mDNS found, unless one is up or
// being dialed, and logs msg at level when it dials.
func (n *Node) dialFound(info peer.AddrInfo, level slog.Level, msg string) {
	if n.currentSession(info.ID) != nil {
		return
	}
	n.mu.Lock()
	busy := n.dialing[info.ID]
	n.dialing[info.ID] = true
	n.mu.Unlock()
	if busy {
		return
	}
	n.goTracked(func() {
		defer func() {
			n.mu.Lock()
			delete(n.dialing, info.ID)
			n.mu.Unlock()
		}()
		n.log.Log(n.ctx, level, msg, "peer", info.ID.String(), "addrs", fmt.Sprint(info.Addrs))
		// Both sides find each other at about the same moment. The side
		// with the larger peer ID gives the other a head start, so that
		// usually one session, not two, comes up.
		if n.h.ID() > info.ID {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(mdnsDialDelay):
			}
		}
		if _, err := n.connect(n.ctx, info.ID, info.Addrs); err != nil {
			n.log.Debug("connect to mDNS peer", "peer", info.ID.String(), "err", err)
		}
	})
}

// mdnsRedialInterval is how often a node dials again the peers mDNS found
// whose session is down. mDNS reports a peer once per record lifetime
// (an hour or more), so after a long outage nothing else would bring an
// idle session back.
const mdnsRedialInterval = 30 * time.Second

// mdnsRedialLoop reconnects to the peers mDNS found once they have no
// session, until the node stops.
func (n *Node) mdnsRedialLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(mdnsRedialInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		n.mu.Lock()
		found := make([]peer.AddrInfo, 0, len(n.mdnsPeers))
		for _, info := range n.mdnsPeers {
			found = append(found, info)
		}
		n.mu.Unlock()
		for _, info := range found {
			if n.ctx.Err() == nil {
				n.dialFound(info, slog.LevelDebug, "reconnecting to a peer found by mDNS")
			}
		}
	}
}
