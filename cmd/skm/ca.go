package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/internal/localapi"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// DefaultCAPort is the TCP and UDP port "skm ca serve" listens on by
// default.
const DefaultCAPort = 7400

func newCACommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Run and manage an skm certificate authority",
		Long: `Commands for the CA node: create it, serve enrollment, issue tokens and
list certificates. The CA's home defaults to $SKM_CA_HOME or ~/.skm-ca.

token, list and cert work whether or not 'skm ca serve' is running: while
it runs they go through its local API socket, otherwise they open the
store themselves.`,
		Args: groupArgs,
		RunE: groupHelp,
	}
	cmd.AddCommand(
		newCAInitCommand(g),
		newCAServeCommand(g),
		newCATokenCommand(g),
		newCAListCommand(g),
		newCACertCommand(g),
		newCARevokeCommand(g),
		newCACRLCommand(g),
	)
	return cmd
}

func newCAInitCommand(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "init --name NAME",
		Short:   "Create a CA: an Ed25519 root key and a self-signed certificate",
		Example: `  skm ca init --name "Example CA"`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usagef("missing --name: name the CA")
			}
			if err := ca.ValidateName(name); err != nil {
				return usageError{err}
			}
			home, err := g.caHome()
			if err != nil {
				return err
			}
			if store.Exists(home) {
				return fmt.Errorf("%s already has a store: use another --home", home)
			}
			pass, err := g.passphrase(true)
			if err != nil {
				return err
			}
			defer clear(pass)
			st, err := store.Create(home, pass, &store.Options{Logger: slog.Default()})
			if err != nil {
				return explainStoreError(home, err)
			}
			defer st.Close()
			a, err := ca.Init(st, name, ca.Config{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "created CA %q in %s\n", a.Name(), home)
			fmt.Fprintf(out, "CA fingerprint (SHA-256): %s\n", protocol.Fingerprint(a.Certificate()))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the CA, used as its certificate's common name")
	return cmd
}

func newCAServeCommand(g *globals) *cobra.Command {
	var listen []string
	var open, mdns, useDHT, relayService bool
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "serve [--listen MULTIADDR]... [--open] [--validity DURATION]",
		Short: "Serve enrollment on libp2p and the local API",
		Long: fmt.Sprintf(`Run the CA: a libp2p host with TCP and QUIC that serves enrollment, and
the local API socket in the CA home. Each listen address is printed on
standard output with the /p2p/ peer ID, one a line, ready to pass to
'skm init --ca'. Logs go to standard error. SIGINT or SIGTERM stops it.

Without --listen the CA listens on all interfaces on port %d, TCP and
QUIC, IPv4 and IPv6.`, DefaultCAPort),
		Example: `  skm ca serve
  skm ca serve --listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1
  skm ca serve --open --validity 24h`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := parseListen(listen, DefaultCAPort)
			if err != nil {
				return err
			}
			if validity < time.Minute {
				return usagef("invalid --validity %s: use at least 1m", validity)
			}
			hc := node.HostConfig{Listen: addrs, DHT: useDHT, RelayService: relayService}
			return runCAServe(cmd, g, hc, mdns, ca.Config{Open: open, Validity: validity})
		},
	}
	cmd.Flags().StringArrayVar(&listen, "listen", nil, "multiaddr to listen on (repeatable)")
	cmd.Flags().BoolVar(&open, "open", false, "enroll without tokens, first come first served by user name (for demos)")
	cmd.Flags().DurationVar(&validity, "validity", ca.DefaultValidity, "lifetime of issued certificates")
	cmd.Flags().BoolVar(&useDHT, "dht", false, "run skm's own Kademlia DHT in server mode, so nodes can bootstrap theirs from the CA")
	cmd.Flags().BoolVar(&relayService, "relay-service", false, "relay connections for nodes that cannot reach each other directly, within libp2p's default relay limits")
	cmd.Flags().BoolVar(&mdns, "mdns", false, "announce the CA on the local networks with mDNS and connect to the nodes found there, so revocations reach them")
	return cmd
}

func parseListen(flags []string, port int) ([]ma.Multiaddr, error) {
	if len(flags) == 0 {
		flags = []string{
			fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", port),
			fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", port),
			fmt.Sprintf("/ip6/::/tcp/%d", port),
			fmt.Sprintf("/ip6/::/udp/%d/quic-v1", port),
		}
	}
	addrs := make([]ma.Multiaddr, 0, len(flags))
	for _, s := range flags {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, usagef("invalid --listen %q: %v", s, err)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

func runCAServe(cmd *cobra.Command, g *globals, hc node.HostConfig, mdns bool, cfg ca.Config) error {
	home, err := g.caHome()
	if err != nil {
		return err
	}
	st, err := g.openStore(home, "skm ca init")
	if err != nil {
		return err
	}
	defer st.Close()
	log := slog.Default()
	cfg.Log = log
	a, err := ca.Load(st, cfg)
	if err != nil {
		return err
	}
	hc.Key = a.PeerKey()
	h, err := node.NewHost(hc)
	if err != nil {
		return err
	}
	defer h.Close()
	h.SetStreamHandler(protocol.EnrollID, a.HandleEnroll)
	h.SetStreamHandler(protocol.DirectoryID, a.HandleDirectory)
	h.SetStreamHandler(protocol.RevokeID, a.HandleRevoke)
	h.SetStreamHandler(protocol.StatusID, a.HandleStatus)
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	rev, err := startCARevocations(ctx, h, a, log)
	if err != nil {
		return err
	}
	defer rev.Close()
	if mdns {
		m, err := node.StartMDNS(h, node.MDNSServiceName(a.Certificate()), func(info peer.AddrInfo) {
			if info.ID != h.ID() && h.Network().Connectedness(info.ID) != network.Connected {
				h.Connect(ctx, info)
			}
		})
		if err != nil {
			return err
		}
		defer m.Close()
	}

	ln, err := localapi.Listen(filepath.Join(home, localapi.SocketName))
	if err != nil {
		return err
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- localapi.Serve(ctx, ln, ca.NewAPIHandler(a), log) }()

	out := cmd.OutOrStdout()
	for _, addr := range node.FullAddrs(h) {
		fmt.Fprintln(out, addr)
	}
	log.Info("CA started", "version", node.Version, "home", home, "name", a.Name(),
		"peer", h.ID().String(), "listen", fmt.Sprint(h.Addrs()),
		"fingerprint", protocol.Fingerprint(a.Certificate()), "open", cfg.Open, "validity", cfg.Validity)

	select {
	case <-ctx.Done():
	case err := <-apiDone:
		if err != nil {
			return fmt.Errorf("local API: %w", err)
		}
	}
	log.Info("CA stopping")
	stop()
	<-apiDone
	return nil
}

// startCARevocations joins the CA's revocation topic, publishes each CRL
// the CA signs, and re-signs the CRL before its nextUpdate even when
// nothing new was revoked.
func startCARevocations(ctx context.Context, h host.Host, a *ca.Authority, log *slog.Logger) (*node.Revocations, error) {
	crl, err := a.CRL()
	if err != nil {
		return nil, err
	}
	applied := func(crl *x509.RevocationList, source string) {
		log.Debug("CRL current", "crl_number", crl.Number.String(), "source", source)
	}
	rev, err := node.JoinRevocations(ctx, h, a.Certificate(), crl, applied, log)
	if err != nil {
		return nil, err
	}
	a.SetOnCRL(func(crl *x509.RevocationList) {
		if err := rev.Publish(ctx, crl); err != nil && ctx.Err() == nil {
			log.Error("publish CRL", "crl_number", crl.Number.String(), "err", err)
		}
	})
	go func() {
		// Checking often is cheap: CRL signs only past half the validity.
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if _, err := a.CRL(); err != nil {
					log.Error("re-sign CRL", "err", err)
				}
			}
		}
	}()
	return rev, nil
}

// openAdmin returns the running CA's API client, or the CA opened from
// its store when no CA runs. done releases what was opened.
func (g *globals) openAdmin() (admin ca.Admin, done func(), err error) {
	home, err := g.caHome()
	if err != nil {
		return nil, nil, err
	}
	dial := func(socket string) (ca.Admin, error) { return ca.Dial(socket) }
	return openBackend(g, home, "skm ca init", dial, func(st *store.Store) (ca.Admin, func(), error) {
		a, err := ca.Load(st, ca.Config{Log: g.commandLogger()})
		return a, func() {}, err
	})
}

func newCATokenCommand(g *globals) *cobra.Command {
	var ttl time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "token USER [--ttl DURATION] [--json]",
		Short: "Create a one-time enrollment token for USER",
		Long: `Create a token that lets USER enroll once before it expires. Only the
token is printed, so a script can capture it; give it to the user over
a channel you trust.`,
		Example: `  skm ca token alice
  skm ca token bob --ttl 1h --json`,
		Args: exactArgs("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := protocol.ValidateUserName(args[0]); err != nil {
				return usageError{err}
			}
			admin, done, err := g.openAdmin()
			if err != nil {
				return err
			}
			defer done()
			t, err := admin.NewToken(args[0], ttl)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Value)
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", ca.DefaultTokenTTL, "how long the token stays valid (1m to 720h)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the token, user and expiry as JSON")
	return cmd
}

func newCAListCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List every certificate the CA issued",
		Example: `  skm ca list
  skm ca list --json | jq '.[].user'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, done, err := g.openAdmin()
			if err != nil {
				return err
			}
			defer done()
			certs, err := admin.List()
			if err != nil {
				return err
			}
			if asJSON {
				if certs == nil {
					certs = []ca.IssuedCert{}
				}
				return writeJSON(cmd.OutOrStdout(), certs)
			}
			return printIssued(cmd.OutOrStdout(), certs)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func printIssued(w io.Writer, certs []ca.IssuedCert) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tUSER\tKEY VERSION\tNOT AFTER\tSTATUS")
	for _, c := range certs {
		status := c.Status
		if c.Reason != "" {
			status += " (" + c.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Serial, c.User, c.KeyVersion,
			c.NotAfter.UTC().Format(time.RFC3339), status)
	}
	return tw.Flush()
}

func newCACertCommand(g *globals) *cobra.Command {
	var asPEM, asJSON bool
	cmd := &cobra.Command{
		Use:   "cert [--pem | --json]",
		Short: "Show the CA certificate",
		Example: `  skm ca cert
  skm ca cert --pem > ca.pem`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, done, err := g.openAdmin()
			if err != nil {
				return err
			}
			defer done()
			return printCert(cmd.OutOrStdout(), admin.Certificate(), asPEM, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asPEM, "pem", false, "print the certificate as PEM")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the certificate's fields as JSON")
	return cmd
}

func newCARevokeCommand(g *globals) *cobra.Command {
	var reasonName string
	cmd := &cobra.Command{
		Use:   "revoke USER|SERIAL --reason REASON",
		Short: "Revoke a user's current certificate, or one certificate by serial",
		Long: `Revoke a certificate and sign a new CRL that lists it. A running CA
publishes the CRL to every node at once. REASON is an RFC 5280 reason
name: unspecified, keyCompromise, cACompromise, affiliationChanged,
superseded, cessationOfOperation, privilegeWithdrawn or aACompromise.
Revocation is permanent, and the revoked key is never certified again.`,
		Example: `  skm ca revoke bob --reason keyCompromise
  skm ca revoke 9810A9DD1DE3AE9AAFAC67FF073AFBF1 --reason superseded`,
		Args: exactArgs("USER|SERIAL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reasonName == "" {
				return usagef("missing --reason: give an RFC 5280 reason such as keyCompromise")
			}
			reason, err := ca.ParseReason(reasonName)
			if err != nil {
				return usageError{err}
			}
			admin, done, err := g.openAdmin()
			if err != nil {
				return err
			}
			defer done()
			crl, err := admin.Revoke(args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (%s); CRL number %s\n", args[0], ca.ReasonName(reason), crl.Number)
			return nil
		},
	}
	cmd.Flags().StringVar(&reasonName, "reason", "", "RFC 5280 revocation reason, such as keyCompromise or superseded")
	return cmd
}

func newCACRLCommand(g *globals) *cobra.Command {
	var asPEM bool
	cmd := &cobra.Command{
		Use:   "crl [--pem]",
		Short: "Print the CA's current CRL",
		Long: `Print the current certificate revocation list: its number, update times
and entries, or with --pem the signed CRL itself, for openssl crl.`,
		Example: `  skm ca crl
  skm ca crl --pem > ca.crl && openssl crl -in ca.crl -CAfile ca.pem -verify -noout`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, done, err := g.openAdmin()
			if err != nil {
				return err
			}
			defer done()
			crl, err := admin.CRL()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asPEM {
				return pem.Encode(w, &pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
			}
			fmt.Fprintf(w, "CRL number:  %s\n", crl.Number)
			fmt.Fprintf(w, "this update: %s\n", crl.ThisUpdate.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "next update: %s\n", crl.NextUpdate.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "revoked:     %d\n", len(crl.RevokedCertificateEntries))
			for _, e := range crl.RevokedCertificateEntries {
				fmt.Fprintf(w, "  %s  %s  %s\n", ca.SerialString(e.SerialNumber),
					e.RevocationTime.UTC().Format(time.RFC3339), ca.ReasonName(e.ReasonCode))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asPEM, "pem", false, "print the signed CRL as PEM")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
