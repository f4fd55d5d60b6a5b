package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skm-p2p/skm/node/bench"
)

func newBenchCommand() *cobra.Command {
	var (
		duration  time.Duration
		transport string
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "bench [--duration D] [--transport tcp|quic] [--json]",
		Short: "Measure handshakes, throughput and latency on loopback against baselines",
		Long: `Measure skm on this machine and print one row per metric, with skm's
value, the baseline's, their ratio, the target ratio and whether it is
met. Every metric is measured in this process on libp2p hosts that
listen on 127.0.0.1; nothing else is contacted, and no home or running
CA is needed.

The baselines are measured in the same run, alternating with skm in
three rounds:
  handshake rate          the crypto limit: the public-key operations of
                          one handshake, both sides, back to back
  throughput, round trip  a raw libp2p stream on the same connection that
                          carries the same messages, length-prefixed,
                          without skm's encryption

The rows without a baseline show the handshake's crypto operations as
flynn/noise calls them, and two nodes sending to each other with badger
stores in a temporary directory, enrolled with a CA in this process.
The run takes about eleven times --duration. Progress goes to standard
error. A missed target does not change the exit status.`,
		Example: `  skm bench
  skm bench --duration 5s --transport quic --json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if transport != bench.TCP && transport != bench.QUIC {
				return usagef("invalid --transport %q: use tcp or quic", transport)
			}
			if duration <= 0 {
				return usagef("invalid --duration %v: it must be positive", duration)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			stderr := cmd.ErrOrStderr()
			rep, err := bench.Run(ctx, bench.Options{
				Transport: transport,
				Duration:  duration,
				Progress:  func(name string) { fmt.Fprintf(stderr, "skm bench: measuring %s\n", name) },
			})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return writeBenchTable(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", bench.DefaultDuration, "measuring time of each side of each metric")
	cmd.Flags().StringVar(&transport, "transport", bench.TCP, "libp2p transport between the hosts: tcp or quic")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// writeBenchTable prints rep as an aligned table with a header line.
func writeBenchTable(w io.Writer, rep *bench.Report) error {
	fmt.Fprintf(w, "transport %s, %s per side, %s %s/%s, %d CPUs (GOMAXPROCS %d)\n\n",
		rep.Transport, rep.Duration, rep.GoVersion, rep.OS, rep.Arch, rep.NumCPU, rep.GOMAXPROCS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tSKM\tBASELINE\tRATIO\tTARGET\tRESULT")
	for _, r := range rep.Results {
		baseline, ratio, target, result := "-", "-", "-", "-"
		if r.Target != nil {
			baseline = formatValue(r.Baseline)
			ratio = fmt.Sprintf("%.3f", r.Ratio)
			target = r.Target.String()
			result = "fail"
			if r.Pass {
				result = "pass"
			}
		}
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\t%s\n",
			r.Name, r.Unit, formatValue(r.SKM), baseline, ratio, target, result)
	}
	return tw.Flush()
}

// formatValue formats v with no decimals from 100 up, one from 10 up and
// two below.
func formatValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
