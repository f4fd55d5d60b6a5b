package node_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/node"
)

func newRoutingHost(t *testing.T, cfg node.HostConfig) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key = key
	if cfg.Listen == nil {
		cfg.Listen = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
	}
	h, err := node.NewHost(cfg)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func addrInfo(h host.Host) peer.AddrInfo {
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

func TestDHTFindsPeerByID(t *testing.T) {
	hub := newRoutingHost(t, node.HostConfig{DHT: true})
	a := newRoutingHost(t, node.HostConfig{DHT: true, DHTBootstrap: []peer.AddrInfo{addrInfo(hub)}})
	c := newRoutingHost(t, node.HostConfig{DHT: true, DHTBootstrap: []peer.AddrInfo{addrInfo(hub)}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range []host.Host{a, c} {
		if err := h.Connect(ctx, addrInfo(hub)); err != nil {
			t.Fatalf("connect to the hub: %v", err)
		}
	}

	// a knows c only by peer ID: the DHT must supply c's address.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := a.Connect(ctx, peer.AddrInfo{ID: c.ID()})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect by peer ID through the DHT: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if a.Network().Connectedness(c.ID()) != network.Connected {
		t.Errorf("a is not connected to c after the DHT lookup")
	}
}

func TestRelayReachesPrivatePeer(t *testing.T) {
	relay := newRoutingHost(t, node.HostConfig{RelayService: true})
	private := newRoutingHost(t, node.HostConfig{Relays: []peer.AddrInfo{addrInfo(relay)}, ForcePrivate: true})
	dialer := newRoutingHost(t, node.HostConfig{})

	// autorelay advertises only circuit addresses through public relay
	// addresses, so on loopback the test builds the address itself and
	// dials until the reservation is in place.
	circuit := relay.Addrs()[0].Encapsulate(ma.StringCast("/p2p/" + relay.ID().String() + "/p2p-circuit"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := dialer.Connect(ctx, peer.AddrInfo{ID: private.ID(), Addrs: []ma.Multiaddr{circuit}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect through the relay at %s: %v", circuit, err)
		}
		dialer.Network().ClosePeer(private.ID())
		dialer.Peerstore().ClearAddrs(private.ID())
		time.Sleep(200 * time.Millisecond)
	}
	if c := dialer.Network().Connectedness(private.ID()); c != network.Limited && c != network.Connected {
		t.Errorf("connectedness through the relay is %v", c)
	}
}
