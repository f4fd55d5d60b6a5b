package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// StatusID is the protocol ID of the CA's status service: a node writes
// one [StatusRequest] frame and reads one [StatusResponse] frame whose
// answer the CA signed, so it can be passed on and checked later.
const StatusID = "/skm/status/1.0.0"

// Frame size limits of the status protocol.
const (
	MaxStatusRequestSize  = 1 << 10
	MaxStatusResponseSize = 4 << 10
)

// StatusRequest names the certificate to report on by its serial, in
// uppercase hex.
type StatusRequest struct {
	Serial string `json:"serial"`
}

// StatusAnswer is the CA's statement about one certificate.
type StatusAnswer struct {
	Serial    string    `json:"serial"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// Produced is when the CA made the statement.
	Produced  time.Time `json:"produced"`
	CRLNumber string    `json:"crl_number"`
}

// StatusResponse carries an answer and the CA's Ed25519 signature over
// [StatusSigningMessage] of it, or an error.
type StatusResponse struct {
	Answer    *StatusAnswer `json:"answer,omitempty"`
	Signature []byte        `json:"signature,omitempty"`
	Error     *Error        `json:"error,omitempty"`
}

// StatusSigningMessage returns the bytes the CA signs for an answer: a
// label, then the answer's JSON encoding, length-prefixed.
func StatusSigningMessage(a *StatusAnswer) ([]byte, error) {
	const label = "skm status v1"
	body, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 2+len(label)+4+len(body))
	out = binary.BigEndian.AppendUint16(out, uint16(len(label)))
	out = append(out, label...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	return append(out, body...), nil
}

// DecodeStatusResponse parses a response frame, returning the CA's
// rejection as an [*Error]. The caller verifies the signature.
func DecodeStatusResponse(p []byte) (*StatusResponse, error) {
	var resp StatusResponse
	if err := DecodeJSON(p, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	if resp.Answer == nil || len(resp.Signature) == 0 {
		return nil, errors.New("status response: missing answer or signature: the CA sent an incomplete response")
	}
	return &resp, nil
}
