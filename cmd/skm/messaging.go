package main

import (
	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/internal/localapi"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// DefaultNodePort is the TCP and UDP port "skm daemon" listens on by
// default.
const DefaultNodePort = 7401

// openService returns the running daemon's API client, or a node started
// in this process on the home's store when no daemon runs. listen is
// used only in the second case. done stops what was started.
func (g *globals) openService(ctx context.Context, listen []ma.Multiaddr) (svc node.Service, done func(), err error) {
	home, err := g.nodeHome()
	if err != nil {
		return nil, nil, err
	}
	dial := func(socket string) (node.Service, error) { return node.Dial(socket) }
	return openBackend(g, home, "skm init", dial, func(st *store.Store) (node.Service, func(), error) {
		n, err := node.Start(ctx, st, node.Config{Listen: listen, Log: g.commandLogger()})
		if err != nil {
			return nil, nil, err
		}
		return n, func() { n.Close() }, nil
	})
}

// openBackend returns, through dial, a client of the process serving the
// local API of home or, when none does, what start makes of the home's
// store, which it opens. done releases what was opened.
func openBackend[T any](g *globals, home, initHint string, dial func(socket string) (T, error),
	start func(*store.Store) (T, func(), error)) (backend T, done func(), err error) {
	var zero T
	socket := filepath.Join(home, localapi.SocketName)
	if localapi.Running(socket) {
		c, err := dial(socket)
		if err == nil {
			return c, func() {}, nil
		}
		if !errors.Is(err, localapi.ErrNotRunning) {
			return zero, nil, err
		}
	}
	st, err := g.openStore(home, initHint)
	if err != nil {
		return zero, nil, err
	}
	b, stop, err := start(st)
	if err != nil {
		st.Close()
		return zero, nil, err
	}
	return b, func() { stop(); st.Close() }, nil
}

func newDaemonCommand(g *globals) *cobra.Command {
	var listen, peers, relays []string
	var mdns, useDHT, relayService, forcePrivate bool
	cmd := &cobra.Command{
		Use:   "daemon [--listen MULTIADDR]... [--peer MULTIADDR]...",
		Short: "Run the node: accept sessions, deliver queued messages, serve the local API",
		Long: fmt.Sprintf(`Run this home's node until SIGINT or SIGTERM. Each listen address is
printed on standard output with the /p2p/ peer ID, one a line, for other
users' --peer. Logs go to standard error.

Other skm commands on this home go through the daemon's local API while
it runs. Without --listen the node listens on all interfaces on port %d,
TCP and QUIC, IPv4 and IPv6. Each --peer is dialed at start, and again
with backoff until a session is up. With --mdns the node also finds the
nodes of its CA on the local networks, and they find it.`, DefaultNodePort),
		Example: `  skm daemon
  skm daemon --listen /ip4/127.0.0.1/tcp/0 --peer /ip4/127.0.0.1/tcp/7401/p2p/12D3KooW...`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := parseListen(listen, DefaultNodePort)
			if err != nil {
				return err
			}
			peerAddrs, err := parsePeers(peers)
			if err != nil {
				return err
			}
			relayAddrs, err := parsePeerFlag("--relay", relays)
			if err != nil {
				return err
			}
			return runDaemon(cmd, g, node.Config{
				Listen: addrs, Peers: peerAddrs, Deliver: true, Renew: true, MDNS: mdns,
				DHT: useDHT, Relays: relayAddrs, RelayService: relayService, ForcePrivate: forcePrivate,
			})
		},
	}
	cmd.Flags().StringArrayVar(&listen, "listen", nil, "multiaddr to listen on (repeatable)")
	cmd.Flags().StringArrayVar(&peers, "peer", nil, "multiaddr of a peer to connect to, ending in /p2p/<peer ID> (repeatable)")
	cmd.Flags().BoolVar(&mdns, "mdns", false, "announce this node on the local networks with mDNS and connect to the nodes of the same CA found there")
	cmd.Flags().BoolVar(&useDHT, "dht", false, "run skm's own Kademlia DHT (server mode, bootstrapped from --peer and the CA) to find peers by peer ID")
	cmd.Flags().StringArrayVar(&relays, "relay", nil, "circuit relay v2 to reserve a slot on, for when peers cannot dial this node directly; enables hole punching (repeatable)")
	cmd.Flags().BoolVar(&relayService, "relay-service", false, "relay connections for other nodes, within libp2p's default relay limits")
	cmd.Flags().BoolVar(&forcePrivate, "force-private", false, "treat this node as unreachable from outside, so it reserves --relay slots at once")
	return cmd
}

func parsePeers(flags []string) ([]ma.Multiaddr, error) { return parsePeerFlag("--peer", flags) }

// parsePeerFlag parses the values of a flag that names peers by
// multiaddrs ending in /p2p/<peer ID>.
func parsePeerFlag(name string, flags []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(flags))
	for _, s := range flags {
		a, err := ma.NewMultiaddr(s)
		if err == nil {
			_, err = peer.AddrInfoFromP2pAddr(a)
		}
		if err != nil {
			return nil, usagef("invalid %s %q: give a multiaddr ending in /p2p/<peer ID>", name, s)
		}
		out = append(out, a)
	}
	return out, nil
}

func runDaemon(cmd *cobra.Command, g *globals, cfg node.Config) error {
	home, err := g.nodeHome()
	if err != nil {
		return err
	}
	st, err := g.openStore(home, "skm init")
	if err != nil {
		return err
	}
	defer st.Close()
	log := slog.Default()
	cfg.Log = log
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	n, err := node.Start(ctx, st, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	ln, err := localapi.Listen(filepath.Join(home, localapi.SocketName))
	if err != nil {
		return err
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- localapi.Serve(ctx, ln, node.NewAPIHandler(n), log) }()

	out := cmd.OutOrStdout()
	for _, a := range n.Addrs() {
		fmt.Fprintln(out, a)
	}
	id := n.Identity()
	log.Info("node started", "version", node.Version, "home", home, "user", id.User,
		"peer", id.PeerID.String(), "key_version", id.KeyVersion,
		"listen", fmt.Sprint(n.Host().Addrs()), "fingerprint", protocol.Fingerprint(id.Cert))
	select {
	case <-ctx.Done():
	case err := <-apiDone:
		if err != nil {
			return fmt.Errorf("local API: %w", err)
		}
	}
	log.Info("node stopping")
	stop()
	<-apiDone
	return nil
}

func newSendCommand(g *globals) *cobra.Command {
	var wait time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "send USER MESSAGE",
		Short: "Send a message to USER",
		Long: `Send MESSAGE to USER, end to end encrypted, and wait up to --wait for
the recipient's acknowledgement. Prints the message ID and "delivered",
or "queued" if USER could not be reached in time: a queued message stays
in the outbox and is delivered once, in order, when USER is reachable
and this node runs (skm daemon).`,
		Example: `  skm send bob "hello bob"
  skm send bob "are you there?" --wait 30s --json`,
		Args: exactArgs("USER", "MESSAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := protocol.ValidateUserName(args[0]); err != nil {
				return usageError{err}
			}
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			res, err := svc.Send(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			state := "queued"
			if res.Delivered {
				state = "delivered"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", res.Message.ID, state)
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Second, "how long to wait for the acknowledgement")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the message and its state as JSON")
	return cmd
}

func newHistoryCommand(g *globals) *cobra.Command {
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history USER [--limit N] [--json]",
		Short: "Show the messages exchanged with USER",
		Example: `  skm history bob
  skm history bob --limit 20 --json`,
		Args: exactArgs("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := protocol.ValidateUserName(args[0]); err != nil {
				return usageError{err}
			}
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			msgs, err := svc.History(args[0], limit)
			if err != nil {
				return err
			}
			if asJSON {
				if msgs == nil {
					msgs = []*node.Message{}
				}
				return writeJSON(cmd.OutOrStdout(), msgs)
			}
			for _, m := range msgs {
				printMessage(cmd.OutOrStdout(), m)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "show only the newest N messages (0 shows all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the messages as JSON")
	return cmd
}

// printMessage writes one line: time, sender, text, and the state of an
// outgoing message that is not delivered yet.
func printMessage(w io.Writer, m *node.Message) {
	suffix := ""
	if m.State == node.StateQueued {
		suffix = "  (queued)"
	}
	fmt.Fprintf(w, "%s %s: %s%s\n", m.Sent.Local().Format("2006-01-02 15:04:05"), m.From, printable(m.Text), suffix)
}

// printable replaces control characters in text from a peer, so a message
// cannot move the cursor or change the terminal's state.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return '\uFFFD'
	}, s)
}

func newPeersCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "peers [--json]",
		Short:   "List contacts and whether a session with each is up",
		Example: "  skm peers\n  skm peers --json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			peers, err := svc.Peers()
			if err != nil {
				return err
			}
			if asJSON {
				if peers == nil {
					peers = []node.PeerInfo{}
				}
				return writeJSON(cmd.OutOrStdout(), peers)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tPEER ID\tKEY VERSION\tCONNECTED\tSESSION")
			for _, p := range peers {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%t\t%s\n", p.User, p.PeerID, p.KeyVersion, p.Connected, p.Session)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the contacts as JSON")
	return cmd
}

func newWhoAmICommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "whoami [--json]",
		Short:   "Show this node's user, peer ID, key version and addresses",
		Example: "  skm whoami\n  skm whoami --json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			who, err := svc.WhoAmI()
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), who)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "user:           %s\n", who.User)
			fmt.Fprintf(w, "peer ID:        %s\n", who.PeerID)
			fmt.Fprintf(w, "key version:    %d\n", who.KeyVersion)
			fmt.Fprintf(w, "serial:         %s\n", who.Serial)
			fmt.Fprintf(w, "not after:      %s\n", who.NotAfter.Format(time.RFC3339))
			fmt.Fprintf(w, "CA:             %s\n", who.CA)
			fmt.Fprintf(w, "CA fingerprint: %s\n", who.CAFingerprint)
			for _, a := range who.Addrs {
				fmt.Fprintf(w, "address:        %s\n", a)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the identity as JSON")
	return cmd
}

func newChatCommand(g *globals) *cobra.Command {
	var listen []string
	cmd := &cobra.Command{
		Use:   "chat USER",
		Short: "Chat with USER interactively",
		Long: `Type a line and press Enter to send it to USER; incoming messages from
USER appear with their time. Ctrl-D or Ctrl-C ends the chat. Lines that
cannot be delivered at once are queued and marked so.

With no daemon running, chat runs the node itself for as long as it
lasts. It dials out to USER, and with --listen it also accepts
connections on those addresses.`,
		Example: "  skm chat bob",
		Args:    exactArgs("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			peerUser := args[0]
			if err := protocol.ValidateUserName(peerUser); err != nil {
				return usageError{err}
			}
			var addrs []ma.Multiaddr
			if len(listen) > 0 {
				var err error
				if addrs, err = parseListen(listen, DefaultNodePort); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			svc, done, err := g.openService(ctx, addrs)
			if err != nil {
				return err
			}
			defer done()
			return runChat(ctx, cmd.InOrStdin(), cmd.OutOrStdout(), svc, peerUser)
		},
	}
	cmd.Flags().StringArrayVar(&listen, "listen", nil, "multiaddr to listen on when no daemon runs (repeatable)")
	return cmd
}

func runChat(ctx context.Context, in io.Reader, out io.Writer, svc node.Service, peerUser string) error {
	who, err := svc.WhoAmI()
	if err != nil {
		return err
	}
	events, err := svc.Events(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "chatting with %s as %s; type a line and press Enter, Ctrl-D to quit\n", peerUser, who.User)
	go func() {
		for e := range events {
			if e.Type == "received" && e.Message.From == peerUser {
				printMessage(out, e.Message)
			}
		}
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(in)
		for {
			line, err := r.ReadString('\n')
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if line != "" {
				lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			if len(line) > node.MaxTextSize {
				fmt.Fprintf(out, "not sent: the line has %d bytes, more than the %d a message may have\n", len(line), node.MaxTextSize)
				continue
			}
			sendCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
			res, err := svc.Send(sendCtx, peerUser, line)
			cancel()
			if err != nil {
				fmt.Fprintf(out, "not sent: %v\n", err)
				continue
			}
			if !res.Delivered {
				fmt.Fprintf(out, "queued: %s will get it when reachable\n", peerUser)
			}
		}
	}
}

// errNotValid makes "skm status" exit 1 after printing a state other than
// valid.
var errNotValid = errors.New("certificate is not valid")

func newStatusCommand(g *globals) *cobra.Command {
	var asJSON, askCA bool
	cmd := &cobra.Command{
		Use:   "status USER|PEM-FILE [--json]",
		Short: "Check whether a certificate is valid, revoked, expired or not yet valid",
		Long: `Print the state of USER's newest certificate known to this node, or of
the certificate in PEM-FILE: valid, revoked (with reason and time),
expired, not yet valid, or unknown (stale CRL) when this node's newest
CRL is past its next update. Exits 0 only for valid. With --ca the
state comes from the CA, in an answer signed with the CA key.`,
		Example: `  skm status bob
  skm status bob.pem --json`,
		Args: exactArgs("USER|PEM-FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			user, der, err := statusTarget(args[0])
			if err != nil {
				return err
			}
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			rep, err := svc.Status(cmd.Context(), user, der, askCA)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), rep)
			}
			if rep.State != "valid" {
				return errNotValid
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the state as JSON")
	cmd.Flags().BoolVar(&askCA, "ca", false, "ask the CA's status service, which signs its answer, instead of the local CRL")
	return cmd
}

// statusTarget reads a PEM certificate if arg names a file, and otherwise
// takes arg as a user name.
func statusTarget(arg string) (user string, der []byte, err error) {
	data, err := os.ReadFile(arg)
	if err != nil {
		if vErr := protocol.ValidateUserName(arg); vErr != nil {
			return "", nil, usagef("%q is neither a readable PEM file nor a valid user name", arg)
		}
		return arg, nil, nil
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", nil, fmt.Errorf("%s contains no PEM CERTIFICATE block: give a PEM file (DER is not supported)", arg)
	}
	return "", block.Bytes, nil
}

func printStatus(w io.Writer, r *node.StatusReport) {
	state := r.State
	if r.State == "revoked" {
		state = fmt.Sprintf("revoked (%s) at %s", r.Reason, r.RevokedAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "%s key version %d, serial %s: %s\n", r.User, r.KeyVersion, r.Serial, state)
}

func newRotateCommand(g *globals) *cobra.Command {
	var asJSON bool
	var token string
	cmd := &cobra.Command{
		Use:   "rotate [--json]",
		Short: "Move to a fresh signing key: key version N+1 with a new certificate",
		Long: `Generate key version N+1, have the CA certify it with a request signed by
version N, and make it current. The CA revokes version N as superseded.
Peers pick up the new certificate at their next handshake, and queued
messages are delivered as usual: nothing in flight is lost.

After the CA revoked this node's certificate, its key can no longer
vouch for a successor: get a token from the CA operator and run
skm rotate --token TOKEN.`,
		Example: "  skm rotate\n  skm rotate --token TOKEN",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			who, err := svc.RotateKey(cmd.Context(), token)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), who)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated to key version %d, certificate serial %s; key version %d is revoked (superseded)\n",
				who.KeyVersion, who.Serial, who.KeyVersion-1)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the new identity as JSON")
	cmd.Flags().StringVar(&token, "token", "", "enrollment token from the CA operator, to recover after a revocation")
	return cmd
}

func newRevokeCommand(g *globals) *cobra.Command {
	reasonName := "keyCompromise"
	cmd := &cobra.Command{
		Use:   "revoke [--reason REASON]",
		Short: "Have the CA revoke this node's own current certificate",
		Long: `Ask the CA to revoke this node's current certificate, with a request
signed by the certified key; the CA gossips the revocation to every node.
Use it when the key may be compromised. Afterwards no peer accepts this
certificate, and the CA will not certify its key again: ask the CA
operator for a token and run skm rotate --token TOKEN for a new key.`,
		Example: "  skm revoke --reason keyCompromise",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reason, err := ca.ParseReason(reasonName)
			if err != nil {
				return usageError{err}
			}
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			number, err := svc.RevokeSelf(cmd.Context(), reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate revoked (%s); CRL number %s\n", ca.ReasonName(reason), number)
			return nil
		},
	}
	cmd.Flags().StringVar(&reasonName, "reason", reasonName, "RFC 5280 revocation reason")
	return cmd
}
