// Package bench measures skm's handshake rate, session throughput and
// round-trip time next to a baseline measured in the same run, and the
// message rate of two running nodes. The skm bench command and the Go
// benchmarks of this package both use it.
//
// Every measurement runs on real libp2p hosts that listen on 127.0.0.1
// and talk over one transport, TCP or QUIC. The certificates come from a
// CA that lives in memory, except for the node measurement, whose nodes
// enroll with a CA running in this process and keep badger stores in a
// temporary directory that is removed afterwards.
//
// The baselines are:
//
//   - for the handshake rate, the crypto limit: the public-key operations
//     of one handshake run back to back on one goroutine
//     ([Pair.CryptoLimit]);
//   - for throughput and round trips, a raw libp2p stream on the same
//     connection that carries the same messages with a 4-byte length
//     prefix and no skm encryption ([KindRaw]). The libp2p connection
//     encrypts both.
//
// [Run] alternates between skm and its baseline in rounds, so that load
// from other processes falls on both alike.
package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// Transports that [Options.Transport] accepts.
const (
	TCP  = "tcp"
	QUIC = "quic"
)

// DefaultDuration is the measuring time of each side of each metric
// when [Options.Duration] is zero.
const DefaultDuration = 2 * time.Second

// Message sizes of the measurements.
const (
	SmallMessage = 1 << 10  // throughput with small messages
	LargeMessage = 64 << 10 // throughput with the largest session frames
	PingSize     = 64       // round trips
	TextSize     = 64       // node sends
)

// rounds is how many times [Run] alternates between skm and the
// baseline within one metric.
const rounds = 3

// maxBatch bounds the operations of one batch, so that a batch of
// throughput messages stays far inside streamTimeout.
const maxBatch = 1 << 20

func listenAddr(transport string) ([]ma.Multiaddr, error) {
	switch transport {
	case TCP:
		return []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}, nil
	case QUIC:
		return []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}, nil
	}
	return nil, fmt.Errorf("unknown transport %q: use %s or %s", transport, TCP, QUIC)
}

// Options configures [Run].
type Options struct {
	// Transport is [TCP] or [QUIC]. Empty means TCP.
	Transport string
	// Duration is how long each side of each metric is measured. Zero
	// means [DefaultDuration].
	Duration time.Duration
	// TempDir is the directory in which the node measurement creates
	// its stores. Empty means [os.TempDir].
	TempDir string
	// Progress, if not nil, is called with the name of each
	// measurement as it starts.
	Progress func(name string)
}

// Report is the outcome of [Run].
type Report struct {
	Transport  string   `json:"transport"`
	Duration   string   `json:"duration"`
	GoVersion  string   `json:"go_version"`
	OS         string   `json:"os"`
	Arch       string   `json:"arch"`
	NumCPU     int      `json:"num_cpu"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	Results    []Result `json:"results"`
}

// Result is one metric. Baseline, Ratio and Target are zero for a metric
// that has no baseline.
type Result struct {
	Name string  `json:"name"`
	Unit string  `json:"unit"`
	SKM  float64 `json:"skm"`
	// Baseline is the metric's value for the reference that skm is
	// compared with, which BaselineName names.
	Baseline     float64 `json:"baseline,omitempty"`
	BaselineName string  `json:"baseline_name,omitempty"`
	// Ratio is SKM divided by Baseline.
	Ratio  float64 `json:"ratio,omitempty"`
	Target *Target `json:"target,omitempty"`
	// Pass reports whether Ratio meets Target. It is false when there
	// is no target.
	Pass bool `json:"pass"`
}

// Target is the bound that a [Result]'s ratio must meet.
type Target struct {
	Ratio float64 `json:"ratio"`
	// Upper makes Ratio an upper bound, for times. Otherwise it is a
	// lower bound, for rates.
	Upper bool `json:"upper"`
}

func (t Target) String() string {
	if t.Upper {
		return fmt.Sprintf("<= %.2f", t.Ratio)
	}
	return fmt.Sprintf(">= %.2f", t.Ratio)
}

// Met reports whether ratio meets t.
func (t Target) Met(ratio float64) bool {
	if t.Upper {
		return ratio <= t.Ratio
	}
	return ratio >= t.Ratio
}

// compare returns the result of a metric that has a baseline.
func compare(name, unit string, skm, baseline float64, baselineName string, target Target) Result {
	r := Result{Name: name, Unit: unit, SKM: skm, Baseline: baseline, BaselineName: baselineName, Target: &target}
	if baseline > 0 {
		r.Ratio = skm / baseline
		r.Pass = target.Met(r.Ratio)
	}
	return r
}

// Run measures every metric over one transport and returns the report.
// It takes about eleven times opts.Duration, plus a second or two to set
// up the hosts and the nodes.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Transport == "" {
		opts.Transport = TCP
	}
	if opts.Duration <= 0 {
		opts.Duration = DefaultDuration
	}
	if opts.Progress == nil {
		opts.Progress = func(string) {}
	}
	rep := &Report{
		Transport:  opts.Transport,
		Duration:   opts.Duration.String(),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	pairResults, err := runPair(ctx, opts)
	if err != nil {
		return nil, err
	}
	rep.Results = append(rep.Results, pairResults...)
	nodeResults, err := runNodes(ctx, opts)
	if err != nil {
		return nil, err
	}
	rep.Results = append(rep.Results, nodeResults...)
	return rep, nil
}

// runPair measures the handshake rate, throughput and round trips.
func runPair(ctx context.Context, opts Options) ([]Result, error) {
	p, err := NewPair(ctx, opts.Transport)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	opts.Progress("handshakes")
	results, err := p.measureHandshakes(ctx, opts.Duration)
	if err != nil {
		return nil, err
	}
	for _, size := range []int{SmallMessage, LargeMessage} {
		opts.Progress(fmt.Sprintf("throughput %s", sizeName(size)))
		rs, err := p.measureThroughput(ctx, size, opts.Duration)
		if err != nil {
			return nil, err
		}
		results = append(results, rs...)
	}
	opts.Progress("round trips")
	rs, err := p.measureRoundTrips(ctx, PingSize, opts.Duration)
	if err != nil {
		return nil, err
	}
	return append(results, rs...), nil
}

// runNodes measures Send between two nodes, and a synced store write.
func runNodes(ctx context.Context, opts Options) ([]Result, error) {
	opts.Progress("node sends")
	n, err := NewNodes(ctx, opts.Transport, opts.TempDir)
	if err != nil {
		return nil, fmt.Errorf("start bench nodes: %w", err)
	}
	defer n.Close()
	var sends, writes []time.Duration
	_, elapsed, err := timeBatches(ctx, opts.Duration, func(count int) (time.Duration, error) {
		start := time.Now()
		s, err := n.Sends(ctx, TextSize, count)
		sends = append(sends, s...)
		return time.Since(start), err
	})
	if err != nil {
		return nil, err
	}
	opts.Progress("store writes")
	_, _, err = timeBatches(ctx, opts.Duration, func(count int) (time.Duration, error) {
		start := time.Now()
		w, err := n.StoreWrites(TextSize, count)
		writes = append(writes, w...)
		return time.Since(start), err
	})
	if err != nil {
		return nil, err
	}
	return []Result{
		{Name: "node send rate", Unit: "messages/s", SKM: rate(len(sends), elapsed)},
		{Name: "node send p50", Unit: "ms", SKM: millis(percentile(sends, 0.50))},
		{Name: "node send p99", Unit: "ms", SKM: millis(percentile(sends, 0.99))},
		{Name: "synced store write p50", Unit: "ms", SKM: millis(percentile(writes, 0.50))},
	}, nil
}

// sizeName returns a message size as "1 KiB" or "64 B".
func sizeName(size int) string {
	if size >= 1<<10 && size%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", size>>10)
	}
	return fmt.Sprintf("%d B", size)
}

func rate(ops int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(ops) / elapsed.Seconds()
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// percentile returns the q-quantile of samples by the nearest-rank
// method, or zero for no samples. It sorts samples.
func percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	rank := int(math.Ceil(q * float64(len(samples))))
	return samples[min(max(rank, 1), len(samples))-1]
}
