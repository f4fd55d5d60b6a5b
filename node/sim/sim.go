// Package sim measures how fast a revocation spreads over GossipSub, in
// one process, on a simulated network.
//
// [RunRevocation] starts nodes and a CA host on go-libp2p's mocknet, an
// in-memory network that delays every write on a link by a fixed
// latency and opens no socket. The hosts are linked in a random sparse
// graph, and each joins the CA's revocation topic with
// [node.JoinRevocations], so every hop runs the topic validator, which
// checks the CRL's signature. The CA revokes a certificate and publishes
// the new CRL, and each node records when its apply function runs. Then
// the CA publishes the same bytes on a second topic that has no
// validator, over the same GossipSub routers and connections: that is
// the baseline, plain GossipSub. A run can repeat this in rounds, each
// revoking another certificate.
//
// Every host shares the process's CPUs, so on a machine with few cores
// the latencies include waiting for a CPU, more so as nodes are added.
package sim

import (
	"fmt"
	"time"
)

// Defaults of [Config].
const (
	DefaultDegree  = 5
	DefaultTimeout = 60 * time.Second
)

// Config describes one simulation.
type Config struct {
	// Nodes is the number of nodes, not counting the CA host. At least 3.
	Nodes int
	// Degree is the number of other nodes each node links to at most, and
	// the number of nodes the CA host links to. Zero means
	// DefaultDegree. From 2 to Nodes-1.
	Degree int
	// Latency is the one-way delay of every link.
	Latency time.Duration
	// Seed picks the topology. Keys are random whatever the seed.
	Seed uint64
	// Rounds is the number of revocations measured, each followed by the
	// plain message. Zero means 1.
	Rounds int
	// Timeout bounds each wait: for the hosts to learn their peers'
	// subscriptions, and for each message to reach every node. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Progress, if set, is called with a short description of each step.
	Progress func(step string)
}

// Result is the outcome of [RunRevocation].
type Result struct {
	Nodes   int           `json:"nodes"`
	Degree  int           `json:"degree"`
	Latency time.Duration `json:"latency_ns"`
	Seed    uint64        `json:"seed"`
	// Links is the number of links, the CA host's included.
	Links int `json:"links"`
	// CRLBytes is the size of the last CRL published. Each round's CRL
	// lists one more revocation than the one before.
	CRLBytes int `json:"crl_bytes"`

	// Revocation contains each node's time from Publish of the CRL to its
	// apply function, the median over the rounds.
	Revocation Series `json:"revocation"`
	// Plain contains each node's time from publishing the same bytes on a
	// topic with no validator to its subscription returning them, the
	// median over the rounds.
	Plain Series `json:"plain"`
	// Ratio is Revocation.Max divided by Plain.Max, or 0 unless both
	// series reached every node.
	Ratio float64 `json:"ratio_of_max"`
	// Rounds contains the series of each round.
	Rounds []Round `json:"rounds"`
}

// Round is one revocation and the plain message after it.
type Round struct {
	Revocation Series `json:"revocation"`
	Plain      Series `json:"plain"`
	// Ratio is Revocation.Max divided by Plain.Max, or 0 unless both
	// series reached every node.
	Ratio float64 `json:"ratio_of_max"`
}

// ratioOfMax returns rev.Max divided by plain.Max, or 0 unless both
// series are complete.
func ratioOfMax(rev, plain Series) float64 {
	if !rev.Complete() || !plain.Complete() || plain.Max <= 0 {
		return 0
	}
	return float64(rev.Max) / float64(plain.Max)
}

// Validate returns an error naming the first setting of c that is out of
// range. Zero Degree, Rounds and Timeout count as their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Nodes < 3:
		return fmt.Errorf("invalid node count %d: use at least 3", c.Nodes)
	case c.Degree < 2 || c.Degree > c.Nodes-1:
		return fmt.Errorf("invalid degree %d: use 2 to %d for %d nodes", c.Degree, c.Nodes-1, c.Nodes)
	case c.Latency < 0:
		return fmt.Errorf("invalid latency %v: it must not be negative", c.Latency)
	case c.Rounds < 0:
		return fmt.Errorf("invalid round count %d: use at least 1", c.Rounds)
	case c.Timeout < 0:
		return fmt.Errorf("invalid timeout %v: it must not be negative", c.Timeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Degree == 0 {
		c.Degree = DefaultDegree
	}
	if c.Rounds == 0 {
		c.Rounds = 1
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}
