package node

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"golang.org/x/time/rate"

	"github.com/skm-p2p/skm/protocol"
)

// Per-peer stream limits of skm's protocols. A node needs one session
// stream per peer, two while a rotation drains the old one, and short
// streams for the rest. A peer that opens more is misbehaving.
var protocolPeerLimits = map[libp2pprotocol.ID]rcmgr.BaseLimit{
	protocol.SessionID:   {StreamsInbound: 4, StreamsOutbound: 4, Streams: 8, Memory: 4 << 20},
	protocol.CRLID:       {StreamsInbound: 2, StreamsOutbound: 2, Streams: 4, Memory: 2 << 20},
	protocol.DirectoryID: {StreamsInbound: 2, StreamsOutbound: 2, Streams: 4, Memory: 1 << 20},
	protocol.EnrollID:    {StreamsInbound: 2, StreamsOutbound: 2, Streams: 4, Memory: 1 << 20},
	protocol.RevokeID:    {StreamsInbound: 2, StreamsOutbound: 2, Streams: 4, Memory: 1 << 20},
	protocol.StatusID:    {StreamsInbound: 2, StreamsOutbound: 2, Streams: 4, Memory: 1 << 20},
}

// newResourceManager returns go-libp2p's default limits, scaled to the
// machine, with a lower per-peer stream count than a general-purpose
// libp2p node needs (64 inbound instead of 256) and the per-protocol
// limits above.
func newResourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	limits.PeerBaseLimit.StreamsInbound = 64
	limits.PeerBaseLimit.Streams = 256
	for id, base := range protocolPeerLimits {
		limits.AddProtocolPeerLimit(id, base, rcmgr.BaseLimitIncrease{})
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
}

// Rates a single peer may use, beyond which its requests are dropped.
// libp2p bounds concurrent streams, but not how fast a peer opens them or
// how many frames it sends.
const (
	handshakeRate   = 10 // per second
	handshakeBurst  = 20
	frameRate       = 5000 // per second, data and acknowledgement frames
	frameBurst      = 10000
	limiterIdleTime = 10 * time.Minute
)

// peerLimiter keeps a token bucket per peer and drops the buckets of
// idle peers.
type peerLimiter struct {
	rate  rate.Limit
	burst int

	mu       sync.Mutex
	limiters map[peer.ID]*limiterEntry
	sweep    time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
	// warned is when the peer was last logged as limited, so that a
	// flood is logged once a minute, not once a request.
	warned time.Time
}

func newPeerLimiter(r rate.Limit, burst int) *peerLimiter {
	return &peerLimiter{rate: r, burst: burst, limiters: map[peer.ID]*limiterEntry{}}
}

// allow takes a token for p. It reports whether p is within its rate and,
// when it is not, whether this is the first refusal in a minute, which
// the caller logs.
func (l *peerLimiter) allow(p peer.ID) (ok, report bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > limiterIdleTime {
		for id, e := range l.limiters {
			if now.Sub(e.seen) > limiterIdleTime {
				delete(l.limiters, id)
			}
		}
		l.sweep = now
	}
	e, found := l.limiters[p]
	if !found {
		e = &limiterEntry{lim: rate.NewLimiter(l.rate, l.burst)}
		l.limiters[p] = e
	}
	e.seen = now
	if e.lim.AllowN(now, 1) {
		return true, false
	}
	if now.Sub(e.warned) < time.Minute {
		return false, false
	}
	e.warned = now
	return false, true
}
