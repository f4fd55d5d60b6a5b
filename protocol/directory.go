package protocol

import (
	"errors"
	"fmt"
)

// DirectoryID is the protocol ID of the CA directory. A node opens a
// stream to the CA, writes one [DirectoryRequest] frame and reads one
// [DirectoryResponse] frame. Only peers the CA has certified may use it.
const DirectoryID = "/skm/directory/1.0.0"

// Frame size limits of the directory protocol.
const (
	MaxDirectoryRequestSize  = 8 << 10
	MaxDirectoryResponseSize = 16 << 10
	// MaxAnnouncedAddrs bounds the addresses a node announces and the CA
	// returns.
	MaxAnnouncedAddrs = 16
)

// DirectoryRequest announces the sender's addresses, looks up a user, or
// both.
type DirectoryRequest struct {
	// Announce lists the multiaddrs the sender listens on. Empty keeps
	// what the CA has.
	Announce []string `json:"announce,omitempty"`
	// Lookup is a user name to look up, or empty.
	Lookup string `json:"lookup,omitempty"`
}

// DirectoryResponse returns the looked-up user's current certificate and
// last announced addresses, or an error.
type DirectoryResponse struct {
	Certificate []byte   `json:"certificate,omitempty"`
	Addrs       []string `json:"addrs,omitempty"`
	Error       *Error   `json:"error,omitempty"`
}

// CodeNotFound is the rejection code for a user the CA does not know.
const CodeNotFound Code = "not-found"

// DecodeDirectoryRequest parses and checks a request frame.
func DecodeDirectoryRequest(p []byte) (*DirectoryRequest, error) {
	var req DirectoryRequest
	if err := DecodeJSON(p, &req); err != nil {
		return nil, err
	}
	if len(req.Announce) > MaxAnnouncedAddrs {
		return nil, fmt.Errorf("directory request: %d addresses, maximum %d", len(req.Announce), MaxAnnouncedAddrs)
	}
	if req.Lookup != "" {
		if err := ValidateUserName(req.Lookup); err != nil {
			return nil, err
		}
	}
	if req.Lookup == "" && len(req.Announce) == 0 {
		return nil, errors.New("directory request: neither announce nor lookup is set")
	}
	return &req, nil
}

// DecodeDirectoryResponse parses a response frame, returning the CA's
// rejection as an [*Error].
func DecodeDirectoryResponse(p []byte) (*DirectoryResponse, error) {
	var resp DirectoryResponse
	if err := DecodeJSON(p, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	if len(resp.Addrs) > MaxAnnouncedAddrs {
		return nil, fmt.Errorf("directory response: %d addresses, maximum %d", len(resp.Addrs), MaxAnnouncedAddrs)
	}
	return &resp, nil
}

// CRLID is the protocol ID of CRL exchange between peers. The side that
// opens the stream writes nothing; the other writes its newest CRL, DER,
// as one frame, or an empty frame if it has none, and closes the stream.
// Peers pass on the CA-signed CRL, so a node can catch up while the CA is
// offline; the reader verifies the CRL before it trusts anything in it.
const CRLID = "/skm/crl/1.0.0"
