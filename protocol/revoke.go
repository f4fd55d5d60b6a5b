package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RevokeID is the protocol ID of self-revocation, by which a node requests
// the revocation of its own certificate. The node writes one [RevokeRequest]
// frame and reads one [RevokeResponse] frame.
const RevokeID = "/skm/revoke/1.0.0"

// Frame size limits of the revocation protocol.
const (
	MaxRevokeRequestSize  = 8 << 10
	MaxRevokeResponseSize = 4 << 10
)

// RevokeRequest is a request to revoke Certificate, signed by the key
// that Certificate certifies.
type RevokeRequest struct {
	Certificate []byte `json:"certificate"`
	Reason      int    `json:"reason"`
	Signature   []byte `json:"signature"`
}

// RevokeResponse returns the number of the CRL that lists the
// certificate, or an error.
type RevokeResponse struct {
	CRLNumber string `json:"crl_number,omitempty"`
	Error     *Error `json:"error,omitempty"`
}

// RevokeMessage returns the bytes a certified key signs to ask for the
// revocation of its certificate: a label, then the certificate's DER and
// the reason code, each length-prefixed, so that the signature covers
// exactly one certificate and one reason.
func RevokeMessage(certDER []byte, reason int) []byte {
	const label = "skm revoke v1"
	out := make([]byte, 0, 2+len(label)+4+len(certDER)+4)
	out = binary.BigEndian.AppendUint16(out, uint16(len(label)))
	out = append(out, label...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(certDER)))
	out = append(out, certDER...)
	return binary.BigEndian.AppendUint32(out, uint32(reason))
}

// DecodeRevokeRequest parses and checks the shape of a request frame.
func DecodeRevokeRequest(p []byte) (*RevokeRequest, error) {
	var req RevokeRequest
	if err := DecodeJSON(p, &req); err != nil {
		return nil, err
	}
	if len(req.Certificate) == 0 || len(req.Signature) == 0 {
		return nil, errors.New("revoke request: missing certificate or signature")
	}
	if req.Reason < 0 || req.Reason > 10 {
		return nil, fmt.Errorf("revoke request: reason code %d outside 0..10", req.Reason)
	}
	return &req, nil
}

// DecodeRevokeResponse parses a response frame, returning the CA's
// rejection as an [*Error].
func DecodeRevokeResponse(p []byte) (*RevokeResponse, error) {
	var resp RevokeResponse
	if err := DecodeJSON(p, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return &resp, nil
}
