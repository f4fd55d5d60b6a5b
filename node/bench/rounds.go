package bench

import (
	"context"
	"time"
)

// batchFunc runs n operations of a measurement and returns the time that
// counts for them.
type batchFunc func(n int) (time.Duration, error)

// tally is the operations of one side of a metric and their time.
type tally struct {
	ops     int
	elapsed time.Duration
}

// rate returns operations per second.
func (t tally) rate() float64 { return rate(t.ops, t.elapsed) }

// timeBatches calls run with growing batch sizes, as testing.B does,
// until the times that run returns add up to at least d.
func timeBatches(ctx context.Context, d time.Duration, run batchFunc) (int, time.Duration, error) {
	var ops int
	var elapsed time.Duration
	n := 1
	for elapsed < d {
		if err := ctx.Err(); err != nil {
			return ops, elapsed, err
		}
		took, err := run(n)
		if err != nil {
			return ops, elapsed, err
		}
		ops += n
		elapsed += took
		n = nextBatch(n, ops, elapsed, d-elapsed)
	}
	return ops, elapsed, nil
}

// nextBatch returns the number of operations that should fill the
// remaining time at the rate so far, growing at most 100-fold over the
// last batch.
func nextBatch(last, ops int, elapsed, remaining time.Duration) int {
	perOp := max(elapsed/time.Duration(ops), 1)
	want := int64(remaining/perOp) + 1
	return int(min(want, int64(100*last), maxBatch))
}

// alternate measures skm and its baselines in turn, for d/rounds each
// in every round, so that all see the same share of any outside load.
// It returns one tally for each batch function, in order.
func alternate(ctx context.Context, d time.Duration, sides ...batchFunc) ([]tally, error) {
	tallies := make([]tally, len(sides))
	for range rounds {
		for i, run := range sides {
			ops, elapsed, err := timeBatches(ctx, d/rounds, run)
			if err != nil {
				return nil, err
			}
			tallies[i].ops += ops
			tallies[i].elapsed += elapsed
		}
	}
	return tallies, nil
}

// measureHandshakes compares the handshake rate with the crypto limit.
func (p *Pair) measureHandshakes(ctx context.Context, d time.Duration) ([]Result, error) {
	t, err := alternate(ctx, d,
		func(n int) (time.Duration, error) { return p.Handshakes(ctx, n) },
		p.CryptoLimit)
	if err != nil {
		return nil, err
	}
	return []Result{
		compare("handshake rate", "handshakes/s", t[0].rate(), t[1].rate(), "crypto limit", Target{Ratio: 0.5}),
	}, nil
}

// measureThroughput compares session and raw throughput with messages
// of size bytes, in MB/s and messages/s.
func (p *Pair) measureThroughput(ctx context.Context, size int, d time.Duration) ([]Result, error) {
	batch := func(kind Kind) batchFunc {
		return func(n int) (time.Duration, error) { return p.Throughput(ctx, kind, size, n) }
	}
	t, err := alternate(ctx, d, batch(KindSession), batch(KindRaw))
	if err != nil {
		return nil, err
	}
	sess, raw := t[0], t[1]
	name := "throughput " + sizeName(size)
	mb := func(t tally) float64 { return t.rate() * float64(size) / 1e6 }
	target := Target{Ratio: 0.9}
	return []Result{
		compare(name, "MB/s", mb(sess), mb(raw), "raw stream", target),
		compare(name, "messages/s", sess.rate(), raw.rate(), "raw stream", target),
	}, nil
}

// measureRoundTrips compares the p50 and p99 round-trip times of
// messages of size bytes on a session and on a raw stream.
func (p *Pair) measureRoundTrips(ctx context.Context, size int, d time.Duration) ([]Result, error) {
	var samples [2][]time.Duration
	batch := func(kind Kind) batchFunc {
		return func(n int) (time.Duration, error) {
			s, err := p.RoundTrips(ctx, kind, size, n)
			samples[kind] = append(samples[kind], s...)
			var sum time.Duration
			for _, d := range s {
				sum += d
			}
			return sum, err
		}
	}
	if _, err := alternate(ctx, d, batch(KindSession), batch(KindRaw)); err != nil {
		return nil, err
	}
	name := "round trip " + sizeName(size)
	target := Target{Ratio: 1.1, Upper: true}
	var results []Result
	for _, q := range []struct {
		label string
		q     float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		sess := micros(percentile(samples[KindSession], q.q))
		raw := micros(percentile(samples[KindRaw], q.q))
		results = append(results, compare(name+" "+q.label, "µs", sess, raw, "raw stream", target))
	}
	return results, nil
}
