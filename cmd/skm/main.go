// Command skm is a peer-to-peer secure messaging daemon with its own key
// management. Run "skm --help" for the commands.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/skm-p2p/skm/node"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks an error in how a command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// globals are the flags shared by every command.
type globals struct {
	home           string
	passphraseFile string
	logLevel       string
	// logLevelSet records whether --log-level was given.
	logLevelSet bool
}

func main() {
	// Everything skm creates is for its user alone.
	unix.Umask(0o077)
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errNotValid) {
		return exitError
	}
	fmt.Fprintf(os.Stderr, "skm: %v\n", err)
	var usage usageError
	if errors.As(err, &usage) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(os.Stderr, "Run 'skm --help' for usage.")
		return exitUsage
	}
	return exitError
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "skm",
		Short: "Peer-to-peer secure messaging with its own key management",
		Long: `skm runs a messaging node that keeps its keys in an encrypted store,
enrolls with an skm CA for an X.509 certificate, and talks to other
nodes over libp2p.

The store passphrase comes from --passphrase-file, else the
SKM_PASSPHRASE environment variable, else a prompt on the terminal.`,
		Version:       node.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.home, "home", "", "home directory (default $SKM_HOME or ~/.skm; for ca commands $SKM_CA_HOME or ~/.skm-ca)")
	pf.StringVar(&g.passphraseFile, "passphrase-file", "", "read the store passphrase from this file")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		g.logLevelSet = cmd.Flags().Changed("log-level")
		return setupLogging(g.logLevel)
	}
	root.AddCommand(
		newInitCommand(g),
		newEnrollCommand(g),
		newCertCommand(g),
		newDaemonCommand(g),
		newSendCommand(g),
		newChatCommand(g),
		newHistoryCommand(g),
		newPeersCommand(g),
		newWhoAmICommand(g),
		newStatusCommand(g),
		newRotateCommand(g),
		newRevokeCommand(g),
		newCACommand(g),
		newBenchCommand(),
		newSimCommand(),
		newVersionCommand(),
	)
	return root
}

func setupLogging(level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return usagef("invalid --log-level %q: use debug, info, warn or error", level)
	}
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})
	slog.SetDefault(slog.New(h))
	return nil
}

// commandLogger returns the logger for a node or CA that a one-shot
// command runs in its own process. That is the default logger if
// --log-level was given. Otherwise it shows only warnings and errors, so
// that the node's routine lines do not bury the command's own output.
func (g *globals) commandLogger() *slog.Logger {
	if g.logLevelSet {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// nodeHome returns the node's home directory.
func (g *globals) nodeHome() (string, error) {
	return resolveHome(g.home, "SKM_HOME", ".skm")
}

// caHome returns the CA's home directory.
func (g *globals) caHome() (string, error) {
	return resolveHome(g.home, "SKM_CA_HOME", ".skm-ca")
}

func resolveHome(flag, env, dir string) (string, error) {
	if flag != "" {
		return filepath.Abs(flag)
	}
	if v := os.Getenv(env); v != "" {
		return filepath.Abs(v)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory: set --home or $%s", env)
	}
	return filepath.Join(home, dir), nil
}

// exactArgs is cobra.ExactArgs with a usage error that names the
// arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) && len(names) == 0 {
			return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
		}
		if len(args) != len(names) {
			return usagef("%s takes %d argument(s): %s", cmd.CommandPath(), len(names), strings.Join(names, " "))
		}
		return nil
	}
}

// groupArgs rejects an unknown subcommand of a command that only groups
// others, such as "skm ca nosuch", as a usage error.
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

// groupHelp prints the help of a command that only groups others.
func groupHelp(cmd *cobra.Command, _ []string) error { return cmd.Help() }

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the skm version",
		Args:  exactArgs(),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "skm", node.Version)
		},
	}
}
