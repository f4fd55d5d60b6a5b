package node

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/skm-p2p/skm/ca"
	"github.com/skm-p2p/skm/internal/localapi"
	"github.com/skm-p2p/skm/protocol"
)

// Service is the set of node operations the messaging commands use,
// served by a [*Node] running in the command's own process or by a
// [*Client] of a running daemon.
type Service interface {
	WhoAmI() (*WhoAmI, error)
	Send(ctx context.Context, user, text string) (*SendResult, error)
	History(user string, limit int) ([]*Message, error)
	Peers() ([]PeerInfo, error)
	Events(ctx context.Context) (<-chan Event, error)
	Certificate() (*x509.Certificate, error)
	Status(ctx context.Context, user string, der []byte, askCA bool) (*StatusReport, error)
	RotateKey(ctx context.Context, token string) (*WhoAmI, error)
	RevokeSelf(ctx context.Context, reason int) (string, error)
}

var (
	_ Service = (*Node)(nil)
	_ Service = (*Client)(nil)
)

// WhoAmI describes the node's own identity.
type WhoAmI struct {
	User          string    `json:"user"`
	PeerID        string    `json:"peer_id"`
	KeyVersion    int       `json:"key_version"`
	Serial        string    `json:"serial"`
	NotAfter      time.Time `json:"not_after"`
	CA            string    `json:"ca"`
	CAFingerprint string    `json:"ca_fingerprint"`
	// Addrs lists the daemon's listen addresses, empty when no daemon
	// runs.
	Addrs []string `json:"addrs"`
}

// PeerInfo describes one contact and whether a session with it is up.
type PeerInfo struct {
	User       string   `json:"user"`
	PeerID     string   `json:"peer_id"`
	KeyVersion int      `json:"key_version"`
	Connected  bool     `json:"connected"`
	Session    string   `json:"session,omitempty"`
	Addrs      []string `json:"addrs"`
}

// WhoAmI returns the node's identity and listen addresses.
func (n *Node) WhoAmI() (*WhoAmI, error) {
	id := n.Identity()
	w := &WhoAmI{
		User:          id.User,
		PeerID:        id.PeerID.String(),
		KeyVersion:    id.KeyVersion,
		Serial:        ca.SerialString(id.Cert.SerialNumber),
		NotAfter:      id.Cert.NotAfter.UTC(),
		CA:            id.CACert.Subject.CommonName,
		CAFingerprint: protocol.Fingerprint(id.CACert),
		Addrs:         []string{},
	}
	if len(n.cfg.Listen) > 0 {
		for _, a := range n.Addrs() {
			w.Addrs = append(w.Addrs, a.String())
		}
	}
	return w, nil
}

// Peers returns every contact, with the fingerprint of the live session
// if there is one.
func (n *Node) Peers() ([]PeerInfo, error) {
	contacts, err := listContacts(n.st)
	if err != nil {
		return nil, err
	}
	out := make([]PeerInfo, 0, len(contacts))
	for _, c := range contacts {
		p := PeerInfo{
			User:       c.User,
			PeerID:     c.PeerID.String(),
			KeyVersion: c.KeyVersion,
			Addrs:      c.Addrs,
		}
		if p.Addrs == nil {
			p.Addrs = []string{}
		}
		if s := n.currentSession(c.PeerID); s != nil {
			p.Connected = n.h.Network().Connectedness(c.PeerID) == network.Connected
			p.Session = s.secure.Fingerprint()
		}
		out = append(out, p)
	}
	return out, nil
}

// RotateKey rotates to a new key version, as [Node.Rotate] does, and
// returns the new identity.
func (n *Node) RotateKey(ctx context.Context, token string) (*WhoAmI, error) {
	if _, err := n.Rotate(ctx, token); err != nil {
		return nil, err
	}
	return n.WhoAmI()
}

// RevokeSelf revokes the node's current certificate, as
// [Node.SelfRevoke] does.
func (n *Node) RevokeSelf(ctx context.Context, reason int) (string, error) {
	return n.SelfRevoke(ctx, reason)
}

// Certificate returns the node's current certificate.
func (n *Node) Certificate() (*x509.Certificate, error) { return n.Identity().Cert, nil }

// Events returns the node's events until ctx ends.
func (n *Node) Events(ctx context.Context) (<-chan Event, error) {
	in, cancel := n.Subscribe()
	out := make(chan Event)
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-in:
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

type certificateResponse struct {
	PEM string `json:"pem"`
}

type statusRequest struct {
	User        string `json:"user,omitempty"`
	Certificate []byte `json:"certificate,omitempty"`
	AskCA       bool   `json:"ask_ca,omitempty"`
}

type rotateRequest struct {
	Token string `json:"token,omitempty"`
}

type revokeRequest struct {
	Reason int `json:"reason"`
}

type revokeResponse struct {
	CRLNumber string `json:"crl_number"`
}

type sendRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
	// WaitMillis bounds the wait for the acknowledgement.
	WaitMillis int64 `json:"wait_ms"`
}

// maxSendWait bounds how long one API request waits for an
// acknowledgement.
const maxSendWait = time.Minute

// NewAPIHandler returns the HTTP handler of a node's local API.
func NewAPIHandler(n *Node) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/whoami", func(w http.ResponseWriter, _ *http.Request) {
		who, err := n.WhoAmI()
		reply(w, who, err)
	})
	mux.HandleFunc("POST /v1/send", func(w http.ResponseWriter, r *http.Request) {
		var req sendRequest
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		wait := min(time.Duration(req.WaitMillis)*time.Millisecond, maxSendWait)
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		res, err := n.Send(ctx, req.To, req.Text)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/history", func(w http.ResponseWriter, r *http.Request) {
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil {
			limit = 0
		}
		msgs, err := n.History(r.URL.Query().Get("user"), limit)
		reply(w, msgs, err)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, _ *http.Request) {
		peers, err := n.Peers()
		reply(w, peers, err)
	})
	mux.HandleFunc("GET /v1/certificate", func(w http.ResponseWriter, _ *http.Request) {
		block := &pem.Block{Type: "CERTIFICATE", Bytes: n.Identity().Cert.Raw}
		localapi.WriteJSON(w, http.StatusOK, certificateResponse{PEM: string(pem.EncodeToMemory(block))})
	})
	mux.HandleFunc("POST /v1/status", func(w http.ResponseWriter, r *http.Request) {
		var req statusRequest
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		rep, err := n.Status(r.Context(), req.User, req.Certificate, req.AskCA)
		if err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		localapi.WriteJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/rotate", func(w http.ResponseWriter, r *http.Request) {
		var req rotateRequest
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		who, err := n.RotateKey(r.Context(), req.Token)
		reply(w, who, err)
	})
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req revokeRequest
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		number, err := n.RevokeSelf(r.Context(), req.Reason)
		reply(w, revokeResponse{CRLNumber: number}, err)
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		events, _ := n.Events(r.Context())
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		flusher, _ := w.(http.Flusher)
		if flusher != nil {
			flusher.Flush()
		}
		enc := json.NewEncoder(w)
		for e := range events {
			if enc.Encode(e) != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	})
	return mux
}

// reply writes v, or err with a status that separates the caller's
// mistakes (400) from the node's own failures (500).
func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		localapi.WriteJSON(w, http.StatusOK, v)
	case errors.Is(err, ErrInvalidMessage), errors.Is(err, ErrUnknownUser):
		localapi.WriteError(w, http.StatusBadRequest, err)
	default:
		localapi.WriteError(w, http.StatusInternalServerError, err)
	}
}

// Client calls the local API of a running daemon.
type Client struct {
	api *localapi.Client
}

// Dial returns a client for the daemon serving the socket at path, or an
// error wrapping [localapi.ErrNotRunning] if none does.
func Dial(path string) (*Client, error) {
	c := &Client{api: localapi.NewClient(path)}
	if _, err := c.WhoAmI(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	return c.api.Call(ctx, method, path, in, out)
}

// callTimeout bounds a local API call that does not wait for the network.
const callTimeout = 10 * time.Second

func (c *Client) get(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return c.call(ctx, http.MethodGet, path, nil, out)
}

// WhoAmI returns the daemon's identity and listen addresses.
func (c *Client) WhoAmI() (*WhoAmI, error) {
	var w WhoAmI
	return &w, c.get("/v1/whoami", &w)
}

// Send has the daemon send text to user and waits until ctx ends for
// the acknowledgement.
func (c *Client) Send(ctx context.Context, user, text string) (*SendResult, error) {
	wait := maxSendWait
	if deadline, ok := ctx.Deadline(); ok {
		wait = time.Until(deadline)
	}
	callCtx, cancel := context.WithTimeout(context.Background(), wait+callTimeout)
	defer cancel()
	var res SendResult
	req := sendRequest{To: user, Text: text, WaitMillis: wait.Milliseconds()}
	return &res, c.call(callCtx, http.MethodPost, "/v1/send", req, &res)
}

// History returns the messages exchanged with user.
func (c *Client) History(user string, limit int) ([]*Message, error) {
	var msgs []*Message
	q := url.Values{"user": {user}, "limit": {strconv.Itoa(limit)}}
	return msgs, c.get("/v1/history?"+q.Encode(), &msgs)
}

// Peers returns the daemon's contacts.
func (c *Client) Peers() ([]PeerInfo, error) {
	var peers []PeerInfo
	return peers, c.get("/v1/peers", &peers)
}

// Status requests from the daemon the state of user's certificate, or
// of der.
func (c *Client) Status(ctx context.Context, user string, der []byte, askCA bool) (*StatusReport, error) {
	ctx, cancel := context.WithTimeout(ctx, directoryTimeout+callTimeout)
	defer cancel()
	var rep StatusReport
	req := statusRequest{User: user, Certificate: der, AskCA: askCA}
	return &rep, c.call(ctx, http.MethodPost, "/v1/status", req, &rep)
}

// RotateKey has the daemon rotate to a new key version.
func (c *Client) RotateKey(ctx context.Context, token string) (*WhoAmI, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultEnrollTimeout+callTimeout)
	defer cancel()
	var w WhoAmI
	return &w, c.call(ctx, http.MethodPost, "/v1/rotate", rotateRequest{Token: token}, &w)
}

// RevokeSelf asks the daemon to have its certificate revoked.
func (c *Client) RevokeSelf(ctx context.Context, reason int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultEnrollTimeout+callTimeout)
	defer cancel()
	var resp revokeResponse
	err := c.call(ctx, http.MethodPost, "/v1/revoke", revokeRequest{Reason: reason}, &resp)
	return resp.CRLNumber, err
}

// Certificate returns the daemon's current certificate.
func (c *Client) Certificate() (*x509.Certificate, error) {
	var resp certificateResponse
	if err := c.get("/v1/certificate", &resp); err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(resp.PEM))
	if block == nil {
		return nil, errors.New("local API returned no certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// Events streams the daemon's events until ctx ends or the daemon stops.
func (c *Client) Events(ctx context.Context) (<-chan Event, error) {
	body, err := c.api.Stream(ctx, "/v1/events")
	if err != nil {
		return nil, err
	}
	out := make(chan Event)
	go func() {
		defer close(out)
		defer body.Close()
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
