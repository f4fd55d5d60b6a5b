package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skm-p2p/skm/node/sim"
)

func newSimCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate skm networks in this process",
		Long: `Commands that run many skm hosts in one process, on go-libp2p's
in-memory mocknet, and measure them. Nothing is sent over a real network,
and no home or running CA is needed.`,
		Args: groupArgs,
		RunE: groupHelp,
	}
	cmd.AddCommand(newSimRevocationCommand())
	return cmd
}

func newSimRevocationCommand() *cobra.Command {
	var (
		cfg      sim.Config
		plotFile string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "revocation --nodes N [--degree D] [--latency 10ms] [--seed S] [--rounds R] [--plot FILE] [--json]",
		Short: "Measure how fast a revocation reaches every node over GossipSub",
		Long: `Start N nodes and a CA host on go-libp2p's mocknet, link each node to
at most D random others (a random spanning tree plus random links) and
the CA host to D random nodes, with the given one-way latency on every
link. Every host joins the CA's revocation topic, whose validator checks
each CRL's signature at every hop. Once every host sees its peers'
subscriptions and two GossipSub heartbeats have passed for the mesh, the
CA revokes a certificate and publishes the new CRL. Then it publishes
the same bytes on a second topic with no validator, over the same hosts
and connections. --rounds repeats this, revoking another certificate each
time, on the same network.

The table shows, for each series, the nodes reached and the time from
publish to delivery at the 50th, 90th and 99th percentile and at the
last node: the revocation series ends when a node's revocation apply
function runs, the plain series when its subscription returns the
message. With several rounds, each node's time is its median over the
rounds. A node missing at the timeout shows as "-". The last lines give
the revocation's max divided by the plain max, and with several rounds
the same ratio within each round.

Every host shares this process's CPUs, so with many nodes on few cores
the times include waiting for a CPU. Progress goes to standard error.`,
		Example: `  skm sim revocation --nodes 100
  skm sim revocation --nodes 100 --degree 6 --latency 0 --plot cdf.svg
  skm sim revocation --nodes 1000 --latency 10ms --rounds 5 --json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("nodes") {
				return usagef("missing --nodes: give the number of nodes, for example --nodes 100")
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			if cfg.Timeout == 0 {
				return usagef("invalid --timeout 0: it must be positive")
			}
			if cfg.Rounds == 0 {
				return usagef("invalid --rounds 0: use at least 1")
			}
			if plotFile != "" {
				if _, err := sim.PlotFormat(plotFile); err != nil {
					return usageError{err}
				}
			}
			return runSimRevocation(cmd, cfg, plotFile, asJSON)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", 0, "number of nodes, not counting the CA host (at least 3)")
	f.IntVar(&cfg.Degree, "degree", sim.DefaultDegree, "links per node at most, and the CA host's links (2 to nodes-1)")
	f.DurationVar(&cfg.Latency, "latency", 10*time.Millisecond, "one-way delay of every link")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of the random topology")
	f.IntVar(&cfg.Rounds, "rounds", 1, "number of revocations to measure, each followed by the plain message")
	f.DurationVar(&cfg.Timeout, "timeout", sim.DefaultTimeout, "time to wait for the hosts' subscriptions, and for each message to reach every node")
	f.StringVar(&plotFile, "plot", "", "write the CDF of both series to this .svg or .png file")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON, with per-node latencies in nanoseconds")
	return cmd
}

func runSimRevocation(cmd *cobra.Command, cfg sim.Config, plotFile string, asJSON bool) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stderr := cmd.ErrOrStderr()
	cfg.Progress = func(step string) { fmt.Fprintf(stderr, "skm sim: %s\n", step) }
	res, err := sim.RunRevocation(ctx, cfg)
	if err != nil {
		return err
	}
	if plotFile != "" {
		if err := sim.WritePlot(plotFile, res); err != nil {
			return fmt.Errorf("write plot: %w", err)
		}
		fmt.Fprintf(stderr, "skm sim: wrote %s\n", plotFile)
	}
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return writeSimTable(cmd.OutOrStdout(), res)
}

// writeSimTable prints one row per series and the ratio of their maxima.
func writeSimTable(w io.Writer, r *sim.Result) error {
	fmt.Fprintf(w, "%d nodes, degree %d, latency %v, seed %d, %d links, %d round(s), last CRL %d bytes; %s %s/%s, %d CPUs\n\n",
		r.Nodes, r.Degree, r.Latency, r.Seed, r.Links, len(r.Rounds), r.CRLBytes,
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIES\tNODES\tP50\tP90\tP99\tMAX")
	for _, s := range []sim.Series{r.Revocation, r.Plain} {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\n", s.Name, s.Reached, s.Nodes(),
			formatLatency(s.P50), formatLatency(s.P90), formatLatency(s.P99), formatLatency(s.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nmax(revocation)/max(plain): %s\n", formatRatio(r.Ratio))
	if len(r.Rounds) < 2 {
		return nil
	}
	ratios := make([]string, len(r.Rounds))
	for i, round := range r.Rounds {
		ratios[i] = formatRatio(round.Ratio)
	}
	_, err := fmt.Fprintf(w, "the same within each round: %s\n", strings.Join(ratios, " "))
	return err
}

// formatRatio formats a ratio with two decimals, or returns "-" for 0,
// the ratio of a series that missed nodes.
func formatRatio(ratio float64) string {
	if ratio == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", ratio)
}

// formatLatency formats d rounded to 10 microseconds, or returns "-" for
// NotReached.
func formatLatency(d time.Duration) string {
	if d == sim.NotReached {
		return "-"
	}
	return d.Round(10 * time.Microsecond).String()
}
