package sim

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestRunRevocationReachesEveryNode(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	const nodes, rounds = 20, 2
	res, err := RunRevocation(ctx, Config{Nodes: nodes, Degree: 4, Latency: time.Millisecond, Seed: 7, Rounds: rounds})
	if err != nil {
		t.Fatalf("RunRevocation: %v", err)
	}
	if len(res.Rounds) != rounds {
		t.Fatalf("%d rounds, want %d", len(res.Rounds), rounds)
	}
	for i, round := range res.Rounds {
		for _, s := range []Series{round.Revocation, round.Plain} {
			t.Run(fmt.Sprintf("round %d %s", i+1, s.Name), func(t *testing.T) {
				checkSeries(t, s, nodes)
			})
		}
		if round.Ratio <= 0 {
			t.Errorf("round %d ratio = %v, want a positive ratio when both series are complete", i+1, round.Ratio)
		}
	}
	for _, s := range []Series{res.Revocation, res.Plain} {
		t.Run("median "+s.Name, func(t *testing.T) {
			checkSeries(t, s, nodes)
		})
	}
	if res.Ratio <= 0 {
		t.Errorf("Ratio = %v, want a positive ratio when both series are complete", res.Ratio)
	}
	if res.CRLBytes == 0 {
		t.Error("CRLBytes = 0, want the size of the last CRL")
	}
	if want := nodes + 4; res.Links < want {
		t.Errorf("Links = %d, want at least %d: a spanning tree plus the CA's links", res.Links, want)
	}
}

// checkSeries checks that s reached all n nodes and that its summary and
// CDF agree with its per-node latencies.
func checkSeries(t *testing.T, s Series, n int) {
	t.Helper()
	if s.Nodes() != n {
		t.Fatalf("Nodes() = %d, want %d", s.Nodes(), n)
	}
	if s.Reached != n {
		t.Errorf("Reached = %d, want %d", s.Reached, n)
	}
	for i, d := range s.PerNode {
		if d < 0 {
			t.Errorf("node %d latency = %v, want it reached", i, d)
		}
	}
	if s.Max != slices.Max(s.PerNode) {
		t.Errorf("Max = %v, want the largest per-node latency %v", s.Max, slices.Max(s.PerNode))
	}
	if !(s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) {
		t.Errorf("percentiles out of order: p50 %v, p90 %v, p99 %v, max %v", s.P50, s.P90, s.P99, s.Max)
	}
	cdf := s.CDF()
	if len(cdf) != n {
		t.Fatalf("CDF has %d points, want %d", len(cdf), n)
	}
	if last := cdf[len(cdf)-1]; last.Fraction != 1 || last.Latency != s.Max {
		t.Errorf("last CDF point = %+v, want fraction 1 at %v", last, s.Max)
	}
}

func TestSeriesPercentiles(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name               string
		perNode            []time.Duration
		reached            int
		p50, p90, p99, max time.Duration
		lastFraction       float64
		wantCDFPoints      int
	}{
		{
			name:    "all nodes reached",
			perNode: []time.Duration{4 * ms, 1 * ms, 3 * ms, 2 * ms},
			reached: 4, p50: 2 * ms, p90: 4 * ms, p99: 4 * ms, max: 4 * ms,
			lastFraction: 1, wantCDFPoints: 4,
		},
		{
			name:    "one node not reached",
			perNode: []time.Duration{2 * ms, NotReached, 1 * ms, 3 * ms},
			reached: 3, p50: 2 * ms, p90: NotReached, p99: NotReached, max: NotReached,
			lastFraction: 0.75, wantCDFPoints: 3,
		},
		{
			name:    "no node reached",
			perNode: []time.Duration{NotReached, NotReached},
			reached: 0, p50: NotReached, p90: NotReached, p99: NotReached, max: NotReached,
			wantCDFPoints: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSeries("test", tt.perNode)
			if s.Reached != tt.reached {
				t.Errorf("Reached = %d, want %d", s.Reached, tt.reached)
			}
			got := []time.Duration{s.P50, s.P90, s.P99, s.Max}
			want := []time.Duration{tt.p50, tt.p90, tt.p99, tt.max}
			if !slices.Equal(got, want) {
				t.Errorf("p50, p90, p99, max = %v, want %v", got, want)
			}
			cdf := s.CDF()
			if len(cdf) != tt.wantCDFPoints {
				t.Fatalf("CDF has %d points, want %d", len(cdf), tt.wantCDFPoints)
			}
			if len(cdf) > 0 && cdf[len(cdf)-1].Fraction != tt.lastFraction {
				t.Errorf("last CDF fraction = %v, want %v", cdf[len(cdf)-1].Fraction, tt.lastFraction)
			}
		})
	}
}

func TestMedianSeriesPerNode(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		rounds [][]time.Duration
		want   []time.Duration
	}{
		{
			name:   "one round unchanged",
			rounds: [][]time.Duration{{3 * ms, NotReached}},
			want:   []time.Duration{3 * ms, NotReached},
		},
		{
			name:   "odd rounds middle value",
			rounds: [][]time.Duration{{1 * ms, 9 * ms}, {5 * ms, NotReached}, {3 * ms, 7 * ms}},
			want:   []time.Duration{3 * ms, 9 * ms},
		},
		{
			name:   "even rounds lower middle",
			rounds: [][]time.Duration{{4 * ms, NotReached}, {2 * ms, NotReached}},
			want:   []time.Duration{2 * ms, NotReached},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rounds []Series
			for _, r := range tt.rounds {
				rounds = append(rounds, newSeries("test", r))
			}
			got := medianSeries("test", rounds)
			if !slices.Equal(got.PerNode, tt.want) {
				t.Errorf("PerNode = %v, want %v", got.PerNode, tt.want)
			}
		})
	}
}

func TestTopologyConnectedAndBounded(t *testing.T) {
	tests := []struct {
		name   string
		nodes  int
		degree int
		seed   uint64
	}{
		{"smallest network", 3, 2, 1},
		{"sparse hundred nodes", 100, 4, 2},
		{"degree six thousand nodes", 1000, 6, 3},
		{"complete graph", 6, 5, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links := topology(tt.nodes, tt.degree, rand.New(rand.NewPCG(tt.seed, 0)))
			checkTopology(t, tt.nodes, tt.degree, links)
			again := topology(tt.nodes, tt.degree, rand.New(rand.NewPCG(tt.seed, 0)))
			if !slices.Equal(links, again) {
				t.Error("same seed gave a different topology")
			}
		})
	}
}

// checkTopology checks that links joins n nodes in one component, with
// no self links, no repeated links and at most d links per node.
func checkTopology(t *testing.T, n, d int, links []link) {
	t.Helper()
	degree := make([]int, n)
	seen := make(map[link]bool)
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	var root func(int) int
	root = func(i int) int {
		for parent[i] != i {
			i = parent[i]
		}
		return i
	}
	for _, l := range links {
		a, b := l[0], l[1]
		if a == b {
			t.Fatalf("node %d is linked to itself", a)
		}
		if seen[link{a, b}] || seen[link{b, a}] {
			t.Fatalf("nodes %d and %d are linked twice", a, b)
		}
		seen[l] = true
		degree[a]++
		degree[b]++
		parent[root(a)] = root(b)
	}
	for i := range n {
		if degree[i] > d {
			t.Errorf("node %d has %d links, want at most %d", i, degree[i], d)
		}
		if root(i) != root(0) {
			t.Errorf("node %d is not connected to node 0", i)
		}
	}
	if len(links) < n-1 {
		t.Errorf("%d links, want at least %d to connect %d nodes", len(links), n-1, n)
	}
}

func TestConfigValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"too few nodes", Config{Nodes: 2, Degree: 1}},
		{"degree below two", Config{Nodes: 10, Degree: 1}},
		{"degree above node count", Config{Nodes: 10, Degree: 10}},
		{"negative latency", Config{Nodes: 10, Latency: -time.Millisecond}},
		{"negative round count", Config{Nodes: 10, Rounds: -1}},
		{"negative timeout", Config{Nodes: 10, Timeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want an error", tt.cfg)
			}
			if _, err := RunRevocation(context.Background(), tt.cfg); err == nil {
				t.Errorf("RunRevocation(%+v) succeeded, want an error", tt.cfg)
			}
		})
	}
	if err := (Config{Nodes: 3}).Validate(); err == nil {
		t.Error("Validate accepted the default degree 5 for 3 nodes")
	}
}

func TestWritePlotFormats(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	res := &Result{
		Nodes: 3, Degree: 2, Latency: ms,
		Revocation: newSeries("revocation", []time.Duration{3 * ms, 5 * ms, 4 * ms}),
		Plain:      newSeries("plain", []time.Duration{2 * ms, NotReached, 3 * ms}),
	}
	tests := []struct {
		name  string
		file  string
		magic []byte
	}{
		{"svg by extension", "cdf.svg", []byte("<?xml")},
		{"png by extension", "cdf.PNG", []byte("\x89PNG")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.file)
			if err := WritePlot(path, res); err != nil {
				t.Fatalf("WritePlot: %v", err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, tt.magic) {
				t.Errorf("%s starts with %q, want %q", tt.file, data[:min(len(data), 8)], tt.magic)
			}
		})
	}
	t.Run("other extension rejected", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cdf.pdf")
		if err := WritePlot(path, res); err == nil {
			t.Error("WritePlot wrote a .pdf, want an error")
		}
		if _, err := os.Stat(path); err == nil {
			t.Error("WritePlot left a .pdf file behind")
		}
	})
}
