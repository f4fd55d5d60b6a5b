package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/skm-p2p/skm/internal/localapi"
)

// Admin is the set of CA operations the CA commands use, served by an
// [*Authority] when the command opens the store itself, or by a [*Client]
// when a running "skm ca serve" has it open.
type Admin interface {
	Certificate() *x509.Certificate
	NewToken(user string, ttl time.Duration) (Token, error)
	List() ([]IssuedCert, error)
	Revoke(target string, reason int) (*x509.RevocationList, error)
	CRL() (*x509.RevocationList, error)
}

var (
	_ Admin = (*Authority)(nil)
	_ Admin = (*Client)(nil)
)

type tokenRequest struct {
	User       string `json:"user"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

type certificateResponse struct {
	PEM string `json:"pem"`
}

type revokeRequest struct {
	Target string `json:"target"`
	Reason int    `json:"reason"`
}

// NewAPIHandler returns the HTTP handler of the CA's local API.
func NewAPIHandler(a *Authority) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/certificate", func(w http.ResponseWriter, _ *http.Request) {
		block := &pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw}
		localapi.WriteJSON(w, http.StatusOK, certificateResponse{PEM: string(pem.EncodeToMemory(block))})
	})
	mux.HandleFunc("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req tokenRequest
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		// Bound the seconds before converting, so that a huge value
		// cannot overflow into an accepted lifetime.
		if req.TTLSeconds < int64(MinTokenTTL/time.Second) || req.TTLSeconds > int64(MaxTokenTTL/time.Second) {
			localapi.WriteError(w, http.StatusBadRequest, fmt.Errorf("invalid token lifetime of %d seconds: use %s to %s", req.TTLSeconds, MinTokenTTL, MaxTokenTTL))
			return
		}
		t, err := a.NewToken(req.User, time.Duration(req.TTLSeconds)*time.Second)
		if err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		localapi.WriteJSON(w, http.StatusOK, t)
	})
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req revokeRequest
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		crl, err := a.Revoke(req.Target, req.Reason)
		if err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		writeCRL(w, crl)
	})
	mux.HandleFunc("GET /v1/crl", func(w http.ResponseWriter, _ *http.Request) {
		crl, err := a.CRL()
		if err != nil {
			localapi.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		writeCRL(w, crl)
	})
	mux.HandleFunc("GET /v1/issued", func(w http.ResponseWriter, _ *http.Request) {
		certs, err := a.List()
		if err != nil {
			localapi.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		localapi.WriteJSON(w, http.StatusOK, certs)
	})
	return mux
}

func writeCRL(w http.ResponseWriter, crl *x509.RevocationList) {
	block := &pem.Block{Type: "X509 CRL", Bytes: crl.Raw}
	localapi.WriteJSON(w, http.StatusOK, certificateResponse{PEM: string(pem.EncodeToMemory(block))})
}

// Client calls the local API of a running CA.
type Client struct {
	api  *localapi.Client
	cert *x509.Certificate
}

// callTimeout bounds one local API call.
const callTimeout = 10 * time.Second

// Dial connects to the CA serving the socket at path and fetches its
// certificate. It returns an error wrapping [localapi.ErrNotRunning] if
// no CA serves the socket.
func Dial(path string) (*Client, error) {
	c := &Client{api: localapi.NewClient(path)}
	var resp certificateResponse
	if err := c.call(http.MethodGet, "/v1/certificate", nil, &resp); err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(resp.PEM))
	if block == nil {
		return nil, errors.New("local API returned no CA certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	c.cert = cert
	return c, nil
}

func (c *Client) call(method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return c.api.Call(ctx, method, path, in, out)
}

// Certificate returns the CA certificate.
func (c *Client) Certificate() *x509.Certificate { return c.cert }

// NewToken has the CA create an enrollment token.
func (c *Client) NewToken(user string, ttl time.Duration) (Token, error) {
	var t Token
	err := c.call(http.MethodPost, "/v1/tokens", tokenRequest{User: user, TTLSeconds: int64(ttl / time.Second)}, &t)
	return t, err
}

// List returns every certificate the CA issued.
func (c *Client) List() ([]IssuedCert, error) {
	var certs []IssuedCert
	err := c.call(http.MethodGet, "/v1/issued", nil, &certs)
	return certs, err
}

// Revoke has the CA revoke a certificate.
func (c *Client) Revoke(target string, reason int) (*x509.RevocationList, error) {
	var resp certificateResponse
	if err := c.call(http.MethodPost, "/v1/revoke", revokeRequest{Target: target, Reason: reason}, &resp); err != nil {
		return nil, err
	}
	return parseCRLPEM(resp.PEM)
}

// CRL returns the CA's newest CRL.
func (c *Client) CRL() (*x509.RevocationList, error) {
	var resp certificateResponse
	if err := c.call(http.MethodGet, "/v1/crl", nil, &resp); err != nil {
		return nil, err
	}
	return parseCRLPEM(resp.PEM)
}

func parseCRLPEM(s string) (*x509.RevocationList, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "X509 CRL" {
		return nil, errors.New("local API returned no CRL")
	}
	return x509.ParseRevocationList(block.Bytes)
}
