package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/node"
	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

func newInitCommand(g *globals) *cobra.Command {
	var user, caAddr, token string
	cmd := &cobra.Command{
		Use:   "init --user NAME [--ca MULTIADDR [--token TOKEN]]",
		Short: "Create a node home with new keys, and enroll with a CA",
		Long: `Create a node home: an encrypted store holding a new libp2p identity
(the peer ID) and the user's signing key, version 1. With --ca, also
enroll with that CA and store its certificate as the trust anchor.

Running init again on a home that has keys for the same user but no
certificate only enrolls, so a failed enrollment can be retried.`,
		Example: `  skm init --user alice
  skm init --user alice --ca /ip4/127.0.0.1/tcp/7400/p2p/12D3KooW... --token TOKEN`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return usagef("missing --user: name the user this node is for")
			}
			if err := protocol.ValidateUserName(user); err != nil {
				return usageError{err}
			}
			addr, err := parseCAAddr(caAddr)
			if err != nil {
				return err
			}
			return runInit(cmd, g, user, addr, token)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user name to certify (lowercase letters, digits, '.', '_', '-')")
	cmd.Flags().StringVar(&caAddr, "ca", "", "multiaddr of the CA, ending in /p2p/<peer ID>")
	cmd.Flags().StringVar(&token, "token", "", "one-time enrollment token from 'skm ca token'")
	return cmd
}

func runInit(cmd *cobra.Command, g *globals, user string, caAddr ma.Multiaddr, token string) error {
	home, err := g.nodeHome()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	st, id, err := g.openOrCreateNode(out, home, user)
	if err != nil {
		return err
	}
	defer st.Close()
	if caAddr == nil {
		return nil
	}
	if id.Cert != nil {
		return fmt.Errorf("%s is already enrolled (key version %d); use 'skm cert' to see the certificate", home, id.KeyVersion)
	}
	if _, err := enroll(cmd.Context(), out, st, caAddr, token); err != nil {
		return fmt.Errorf("%w\nThe home and its keys were kept: fix the cause and run 'skm enroll --ca ADDR' to retry", err)
	}
	return nil
}

// openOrCreateNode opens the node store in home, creating the store and
// the identity if they do not exist yet.
func (g *globals) openOrCreateNode(out io.Writer, home, user string) (*store.Store, *node.Identity, error) {
	if store.Exists(home) {
		st, err := g.openStore(home, "skm init")
		if err != nil {
			return nil, nil, err
		}
		id, err := node.LoadIdentity(st)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		if id.User != user {
			st.Close()
			return nil, nil, fmt.Errorf("%s already belongs to user %q: use another --home for %q", home, id.User, user)
		}
		fmt.Fprintf(out, "%s already has keys for user %s (key version %d)\n", home, id.User, id.KeyVersion)
		return st, id, nil
	}
	pass, err := g.passphrase(true)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pass)
	st, err := store.Create(home, pass, &store.Options{Logger: slog.Default()})
	if err != nil {
		return nil, nil, explainStoreError(home, err)
	}
	id, err := node.Init(st, user)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	fmt.Fprintf(out, "created %s for user %s\nkey version: %d\npeer ID: %s\n", home, id.User, id.KeyVersion, id.PeerID)
	return st, id, nil
}

func parseCAAddr(s string) (ma.Multiaddr, error) {
	if s == "" {
		return nil, nil
	}
	addr, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, usagef("invalid --ca %q: %v", s, err)
	}
	return addr, nil
}

func enroll(ctx context.Context, out io.Writer, st *store.Store, caAddr ma.Multiaddr, token string) (*node.Identity, error) {
	id, err := node.Enroll(ctx, st, node.EnrollConfig{CA: caAddr, Token: token})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "enrolled with CA %q\nCA fingerprint (SHA-256): %s\n", id.CACert.Subject.CommonName, protocol.Fingerprint(id.CACert))
	fmt.Fprintf(out, "user %s registered with key version %d, certificate serial %s, valid until %s\n",
		id.User, id.KeyVersion, ca.SerialString(id.Cert.SerialNumber), id.Cert.NotAfter.UTC().Format(time.RFC3339))
	return id, nil
}

func newEnrollCommand(g *globals) *cobra.Command {
	var caAddr, token string
	cmd := &cobra.Command{
		Use:     "enroll --ca MULTIADDR [--token TOKEN]",
		Short:   "Get a certificate for this node's current key from a CA",
		Example: `  skm enroll --ca /ip4/127.0.0.1/tcp/7400/p2p/12D3KooW... --token TOKEN`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr, err := parseCAAddr(caAddr)
			if err != nil {
				return err
			}
			if addr == nil {
				return usagef("missing --ca: give the CA's multiaddr, ending in /p2p/<peer ID>")
			}
			home, err := g.nodeHome()
			if err != nil {
				return err
			}
			st, err := g.openStore(home, "skm init")
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = enroll(cmd.Context(), cmd.OutOrStdout(), st, addr, token)
			return err
		},
	}
	cmd.Flags().StringVar(&caAddr, "ca", "", "multiaddr of the CA, ending in /p2p/<peer ID>")
	cmd.Flags().StringVar(&token, "token", "", "one-time enrollment token from 'skm ca token'")
	return cmd
}

func newCertCommand(g *globals) *cobra.Command {
	var asPEM, asJSON bool
	cmd := &cobra.Command{
		Use:   "cert [--pem | --json]",
		Short: "Show this node's certificate",
		Example: `  skm cert
  skm cert --pem > alice.pem`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, done, err := g.openService(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer done()
			cert, err := svc.Certificate()
			if err != nil {
				return err
			}
			s := summarize(cert)
			// The status comes from the node, which has the newest CRL,
			// not from the dates alone.
			if rep, err := svc.Status(cmd.Context(), "", cert.Raw, false); err == nil {
				s.Status = rep.State
				if rep.Reason != "" {
					s.Status += " (" + rep.Reason + ")"
				}
			}
			return printSummary(cmd.OutOrStdout(), cert, s, asPEM, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asPEM, "pem", false, "print the certificate as PEM")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the certificate's fields as JSON")
	return cmd
}

// certSummary is the JSON form of a certificate.
type certSummary struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	KeyVersion  int       `json:"key_version,omitempty"`
	PeerID      string    `json:"peer_id,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Status      string    `json:"status"`
	Fingerprint string    `json:"sha256_fingerprint"`
}

func summarize(cert *x509.Certificate) certSummary {
	s := certSummary{
		Subject:     cert.Subject.CommonName,
		Issuer:      cert.Issuer.CommonName,
		Serial:      ca.SerialString(cert.SerialNumber),
		NotBefore:   cert.NotBefore.UTC(),
		NotAfter:    cert.NotAfter.UTC(),
		Status:      ca.Status(cert, time.Now()),
		Fingerprint: protocol.Fingerprint(cert),
	}
	if id, err := protocol.CertIdentity(cert); err == nil {
		s.KeyVersion = id.KeyVersion
		s.PeerID = id.PeerID.String()
	} else if p, err := protocol.CertPeerID(cert); err == nil {
		s.PeerID = p.String()
	}
	return s
}

func printCert(w io.Writer, cert *x509.Certificate, asPEM, asJSON bool) error {
	return printSummary(w, cert, summarize(cert), asPEM, asJSON)
}

func printSummary(w io.Writer, cert *x509.Certificate, s certSummary, asPEM, asJSON bool) error {
	if asPEM && asJSON {
		return usagef("--pem and --json cannot be combined")
	}
	if asPEM {
		return pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	if asJSON {
		return writeJSON(w, s)
	}
	fmt.Fprintf(w, "subject:     %s\n", s.Subject)
	fmt.Fprintf(w, "issuer:      %s\n", s.Issuer)
	fmt.Fprintf(w, "serial:      %s\n", s.Serial)
	if s.KeyVersion != 0 {
		fmt.Fprintf(w, "key version: %d\n", s.KeyVersion)
	}
	if s.PeerID != "" {
		fmt.Fprintf(w, "peer ID:     %s\n", s.PeerID)
	}
	fmt.Fprintf(w, "not before:  %s\n", s.NotBefore.Format(time.RFC3339))
	fmt.Fprintf(w, "not after:   %s\n", s.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(w, "status:      %s\n", s.Status)
	fmt.Fprintf(w, "SHA-256:     %s\n", s.Fingerprint)
	return nil
}
