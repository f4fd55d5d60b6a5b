package bench_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/skm-p2p/skm/node/bench"
)

var transports = []string{bench.TCP, bench.QUIC}

// TestRunReportsEveryMetric runs the whole measurement with a tiny
// duration. It checks that every metric gets a number, never how large
// the number is.
func TestRunReportsEveryMetric(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			rep, err := bench.Run(context.Background(), bench.Options{
				Transport: transport,
				Duration:  100 * time.Millisecond,
				TempDir:   t.TempDir(),
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if rep.Transport != transport {
				t.Errorf("report transport %q, want %q", rep.Transport, transport)
			}
			if len(rep.Results) == 0 {
				t.Fatal("report has no results")
			}
			for _, r := range rep.Results {
				if r.SKM <= 0 {
					t.Errorf("%s: skm value %v, want > 0", r.Name, r.SKM)
				}
				if r.Target == nil {
					continue
				}
				if r.Baseline <= 0 {
					t.Errorf("%s: baseline %v, want > 0", r.Name, r.Baseline)
				}
				if r.Ratio <= 0 {
					t.Errorf("%s: ratio %v, want > 0", r.Name, r.Ratio)
				}
			}
		})
	}
}

func TestRunRejectsUnknownTransport(t *testing.T) {
	_, err := bench.Run(context.Background(), bench.Options{Transport: "udp", Duration: time.Millisecond})
	if err == nil {
		t.Fatal("Run with transport udp succeeded")
	}
}

func TestTargetMet(t *testing.T) {
	tests := []struct {
		name   string
		target bench.Target
		ratio  float64
		want   bool
	}{
		{"lower bound met", bench.Target{Ratio: 0.9}, 0.95, true},
		{"lower bound equal", bench.Target{Ratio: 0.9}, 0.9, true},
		{"lower bound missed", bench.Target{Ratio: 0.9}, 0.85, false},
		{"upper bound met", bench.Target{Ratio: 1.1, Upper: true}, 1.05, true},
		{"upper bound missed", bench.Target{Ratio: 1.1, Upper: true}, 1.2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.target.Met(tt.ratio); got != tt.want {
				t.Errorf("Target%+v.Met(%v) = %v, want %v", tt.target, tt.ratio, got, tt.want)
			}
		})
	}
}

func newPair(b *testing.B, transport string) *bench.Pair {
	b.Helper()
	p, err := bench.NewPair(context.Background(), transport)
	if err != nil {
		b.Fatalf("NewPair: %v", err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// reportLatency reports the p50 and p99 of samples.
func reportLatency(b *testing.B, samples []time.Duration) {
	b.Helper()
	slices.Sort(samples)
	at := func(q float64) float64 {
		i := min(int(q*float64(len(samples))), len(samples)-1)
		return float64(samples[i].Nanoseconds())
	}
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
}

func BenchmarkHandshake(b *testing.B) {
	for _, transport := range transports {
		b.Run(transport, func(b *testing.B) {
			p := newPair(b, transport)
			b.ResetTimer()
			elapsed, err := p.Handshakes(context.Background(), b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/handshake")
		})
	}
}

func BenchmarkCryptoLimit(b *testing.B) {
	p := newPair(b, bench.TCP)
	for _, bm := range []struct {
		name string
		run  func(n int) (time.Duration, error)
	}{
		{"ecdh", p.CryptoLimit},
	} {
		b.Run(bm.name, func(b *testing.B) {
			elapsed, err := bm.run(b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/handshake")
		})
	}
}

func BenchmarkThroughput(b *testing.B) {
	for _, transport := range transports {
		for _, kind := range []bench.Kind{bench.KindSession, bench.KindRaw} {
			for _, size := range []int{bench.SmallMessage, bench.LargeMessage} {
				name := transport + "/" + kind.String() + "/" + sizeName(size)
				b.Run(name, func(b *testing.B) {
					p := newPair(b, transport)
					b.SetBytes(int64(size))
					b.ResetTimer()
					elapsed, err := p.Throughput(context.Background(), kind, size, b.N)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
				})
			}
		}
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, transport := range transports {
		for _, kind := range []bench.Kind{bench.KindSession, bench.KindRaw} {
			b.Run(transport+"/"+kind.String(), func(b *testing.B) {
				p := newPair(b, transport)
				b.ResetTimer()
				samples, err := p.RoundTrips(context.Background(), kind, bench.PingSize, b.N)
				if err != nil {
					b.Fatal(err)
				}
				reportLatency(b, samples)
			})
		}
	}
}

func newNodes(b *testing.B, transport string) *bench.Nodes {
	b.Helper()
	n, err := bench.NewNodes(context.Background(), transport, b.TempDir())
	if err != nil {
		b.Fatalf("NewNodes: %v", err)
	}
	b.Cleanup(func() { n.Close() })
	return n
}

func BenchmarkNodeSend(b *testing.B) {
	for _, transport := range transports {
		b.Run(transport, func(b *testing.B) {
			n := newNodes(b, transport)
			b.ResetTimer()
			samples, err := n.Sends(context.Background(), bench.TextSize, b.N)
			if err != nil {
				b.Fatal(err)
			}
			reportLatency(b, samples)
		})
	}
}

func BenchmarkStoreWrite(b *testing.B) {
	n := newNodes(b, bench.TCP)
	b.ResetTimer()
	samples, err := n.StoreWrites(bench.TextSize, b.N)
	if err != nil {
		b.Fatal(err)
	}
	reportLatency(b, samples)
}

func sizeName(size int) string {
	if size >= 1<<10 {
		return fmt.Sprint(size>>10, "KiB")
	}
	return fmt.Sprint(size, "B")
}
