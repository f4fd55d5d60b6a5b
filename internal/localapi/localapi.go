// Package localapi carries the local control API of a running skm process:
// JSON over HTTP on a Unix socket inside the process's home directory.
//
// The socket is created with mode 0600 in a home of mode 0700, and every
// accepted connection is checked with SO_PEERCRED: a process of another
// user is disconnected before it can send a request.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxRequestSize bounds a request body. A message of the largest size,
// 64 KiB, takes up to six times that in JSON, where each control
// character becomes a \u escape, so 1 MiB leaves room to spare.
const MaxRequestSize = 1 << 20

// MaxResponseSize bounds a response body read by [Client].
const MaxResponseSize = 16 << 20

// ErrNotRunning is returned by [Client] calls when no process is serving
// the socket.
var ErrNotRunning = errors.New("no process is serving the local API")

// Listen creates the socket at path with mode 0600, replacing a stale
// socket file that no process serves. The caller must hold the home's
// store lock, which guarantees that no other process serves path.
func Listen(path string) (net.Listener, error) {
	if err := checkPrivateDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return &ownerListener{ln.(*net.UnixListener)}, nil
}

// checkPrivateDir returns an error unless dir belongs to this process's
// user and no one else may enter it: the socket's own mode protects it
// only on systems that honour modes on sockets.
func checkPrivateDir(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to user ID %d, not to this user (%d): refusing to serve the local API there", dir, st.Uid, os.Getuid())
	}
	if info.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o, so other users could reach the local API: run chmod 700 %s", dir, info.Mode().Perm(), dir)
	}
	return nil
}

// ownerListener accepts only connections from processes of this
// process's user.
type ownerListener struct {
	*net.UnixListener
}

func (l *ownerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && uid == os.Getuid() {
			return c, nil
		}
		c.Close()
	}
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// Serve runs handler on ln until ctx ends, then shuts the server down.
// A nil log discards the server's messages.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(handler, MaxRequestSize),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// errorBody is the JSON body of every failed request.
type errorBody struct {
	Error string `json:"error"`
}

// WriteJSON writes v with the given HTTP status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// WriteError writes err as a JSON error with the given HTTP status.
func WriteError(w http.ResponseWriter, status int, err error) {
	WriteJSON(w, status, errorBody{Error: err.Error()})
}

// ReadJSON decodes a request body into v. It rejects unknown fields and
// bodies larger than [MaxRequestSize].
func ReadJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("request body exceeds %d bytes", MaxRequestSize)
		}
		return fmt.Errorf("invalid request body: %w", err)
	}
	if dec.More() || dec.Decode(new(json.RawMessage)) != io.EOF {
		return errors.New("invalid request body: data after the JSON value")
	}
	return nil
}

// Client calls the local API of the process that serves a socket.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	return &Client{
		path: path,
		http: &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return dialer.DialContext(ctx, "unix", path)
				},
			},
		},
	}
}

// Running reports whether a process serves the socket at path.
func Running(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Call sends a request with in as the JSON body (none if nil) and decodes
// the response into out (ignored if nil). A non-2xx response becomes an
// error carrying the server's message.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		p, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(p)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://skm"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if isDialError(err) {
			return fmt.Errorf("%s: %w", c.path, ErrNotRunning)
		}
		return fmt.Errorf("local API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	limited := io.LimitReader(resp.Body, MaxResponseSize)
	if resp.StatusCode/100 != 2 {
		var e errorBody
		if json.NewDecoder(limited).Decode(&e) != nil || e.Error == "" {
			return fmt.Errorf("local API %s %s: %s", method, path, resp.Status)
		}
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(limited).Decode(out); err != nil {
		return fmt.Errorf("local API %s %s: decode response: %w", method, path, err)
	}
	return nil
}

// Stream sends a GET request and returns the response body for the
// caller to read as it arrives, as for a stream of events. The caller
// closes the body.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://skm"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if isDialError(err) {
			return nil, fmt.Errorf("%s: %w", c.path, ErrNotRunning)
		}
		return nil, fmt.Errorf("local API GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("local API GET %s: %s", path, resp.Status)
	}
	return resp.Body, nil
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// SocketName is the file name of the local API socket in a home.
const SocketName = "skm.sock"
