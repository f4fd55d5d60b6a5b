package sim

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// NotReached is the latency of a node that did not get a message before
// the timeout, and the value of a percentile that falls on such a node.
const NotReached time.Duration = -1

// Series is the delivery of one message to every node: the latency from
// the publish call to each node's delivery, with summary percentiles.
// Percentiles are nearest-rank over all nodes, and a node that was not
// reached counts as later than every node that was.
type Series struct {
	// Name is "revocation" or "plain".
	Name string `json:"name"`
	// PerNode contains each node's latency, in node order, or NotReached.
	PerNode []time.Duration `json:"per_node_ns"`
	// Reached is the number of nodes that got the message.
	Reached int `json:"reached"`

	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// newSeries summarizes per-node latencies.
func newSeries(name string, perNode []time.Duration) Series {
	s := Series{Name: name, PerNode: perNode}
	for _, d := range perNode {
		if d != NotReached {
			s.Reached++
		}
	}
	s.P50 = s.Percentile(50)
	s.P90 = s.Percentile(90)
	s.P99 = s.Percentile(99)
	s.Max = s.Percentile(100)
	return s
}

// medianSeries returns a series whose latency for each node is the
// nearest-rank median of that node's latencies in rounds, the lower one
// of the middle two for an even count. NotReached counts as later than
// any latency. The rounds must all have the same nodes.
func medianSeries(name string, rounds []Series) Series {
	if len(rounds) == 0 {
		return newSeries(name, nil)
	}
	perNode := make([]time.Duration, len(rounds[0].PerNode))
	samples := make([]time.Duration, len(rounds))
	for i := range perNode {
		for r, s := range rounds {
			samples[r] = s.PerNode[i]
			if samples[r] == NotReached {
				samples[r] = math.MaxInt64
			}
		}
		slices.Sort(samples)
		perNode[i] = samples[(len(samples)-1)/2]
		if perNode[i] == math.MaxInt64 {
			perNode[i] = NotReached
		}
	}
	return newSeries(name, perNode)
}

// Nodes returns the number of nodes in the network.
func (s Series) Nodes() int { return len(s.PerNode) }

// Complete reports whether the message reached every node.
func (s Series) Complete() bool { return s.Reached == len(s.PerNode) }

// Percentile returns the nearest-rank p-th percentile of the latencies,
// for p from 0 to 100, or NotReached if it falls on a node that was not
// reached.
func (s Series) Percentile(p float64) time.Duration {
	n := len(s.PerNode)
	if n == 0 {
		return NotReached
	}
	rank := max(1, int(math.Ceil(p/100*float64(n))))
	sorted := s.sorted()
	if rank > len(sorted) {
		return NotReached
	}
	return sorted[rank-1]
}

// sorted returns the latencies of the nodes reached, in ascending order.
func (s Series) sorted() []time.Duration {
	out := make([]time.Duration, 0, s.Reached)
	for _, d := range s.PerNode {
		if d != NotReached {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// CDFPoint is one step of an empirical distribution function.
type CDFPoint struct {
	// Latency is a node's latency.
	Latency time.Duration
	// Fraction is the fraction of all nodes, reached or not, whose
	// latency is at most Latency.
	Fraction float64
}

// CDF returns the empirical cumulative distribution of the latencies: one
// point per node reached, in ascending order of latency. The last
// fraction is below 1 when some node was not reached.
func (s Series) CDF() []CDFPoint {
	sorted := s.sorted()
	points := make([]CDFPoint, len(sorted))
	for i, d := range sorted {
		points[i] = CDFPoint{Latency: d, Fraction: float64(i+1) / float64(len(s.PerNode))}
	}
	return points
}

// arrivals records when each of n nodes first gets one message. The time
// runs from the call to begin.
type arrivals struct {
	payload []byte
	done    chan struct{}

	mu    sync.Mutex
	start time.Time
	at    []time.Duration
	left  int
}

func newArrivals(n int, payload []byte) *arrivals {
	a := &arrivals{payload: payload, done: make(chan struct{}), at: make([]time.Duration, n), left: n}
	for i := range a.at {
		a.at[i] = NotReached
	}
	return a
}

// begin starts the clock. Call it right before publishing.
func (a *arrivals) begin() {
	a.mu.Lock()
	a.start = time.Now()
	a.mu.Unlock()
}

// arrive records node i's delivery. Repeats and indexes past the nodes,
// the CA host's included, are ignored.
func (a *arrivals) arrive(i int) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if i < 0 || i >= len(a.at) || a.at[i] != NotReached {
		return
	}
	a.at[i] = now.Sub(a.start)
	a.left--
	if a.left == 0 {
		close(a.done)
	}
}

// wait blocks until every node has the message or timeout passes. It
// returns an error only if ctx ends.
func (a *arrivals) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// latencies returns a copy of the per-node latencies so far.
func (a *arrivals) latencies() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.at)
}
