package protocol

import (
	"crypto/x509"
	"errors"
	"fmt"
	"unicode/utf8"
)

// EnrollID is the protocol ID of enrollment. A node opens a stream to the
// CA, writes one [EnrollRequest] frame and reads one [EnrollResponse]
// frame.
const EnrollID = "/skm/enroll/1.0.0"

// Frame size limits of the enrollment protocol. A request holds one
// Ed25519 CSR (about 300 bytes as DER) and a token; a response holds two
// certificates of under 1 KiB each.
const (
	MaxEnrollRequestSize  = 8 << 10
	MaxEnrollResponseSize = 16 << 10
)

// EnrollRequest asks the CA for a certificate.
type EnrollRequest struct {
	// CSR is a DER PKCS#10 request signed by the key to certify. Its
	// subject common name is the user name, and it carries the skm:peer
	// and skm:key-version URIs.
	CSR []byte `json:"csr"`
	// Token is the one-time enrollment token, empty on a CA that runs
	// with open enrollment.
	Token string `json:"token,omitempty"`
	// Continuity is a signature over the CSR bytes made with the key of
	// the user's current certificate. It is needed only to certify a new
	// key for a name that already has one.
	Continuity []byte `json:"continuity,omitempty"`
}

// EnrollResponse is the CA's reply: either both certificates or an error.
type EnrollResponse struct {
	// Certificate is the issued certificate, DER.
	Certificate []byte `json:"certificate,omitempty"`
	// CACertificate is the CA's self-signed certificate, DER.
	CACertificate []byte `json:"ca_certificate,omitempty"`
	// Error is set when the CA rejected the request.
	Error *Error `json:"error,omitempty"`
}

// Error is a rejection sent to the peer: a stable code for programs and
// a message for people.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Code names why a request was rejected.
type Code string

// Rejection codes.
const (
	CodeBadRequest   Code = "bad-request"
	CodeBadCSR       Code = "bad-csr"
	CodePeerMismatch Code = "peer-mismatch"
	CodeBadToken     Code = "bad-token"
	CodeTokenExpired Code = "token-expired"
	CodeTokenUsed    Code = "token-used"
	CodeNameTaken    Code = "name-taken"
	CodeKeyRevoked   Code = "key-revoked"
	CodeInternal     Code = "internal"
)

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// MaxErrorMessage bounds the message of an [Error] made by [Errorf]. A
// message may quote the request, and JSON may escape each byte of it as
// six, so this bound keeps a rejection within the smallest response
// frame, [MaxRevokeResponseSize].
const MaxErrorMessage = 512

// Errorf returns an [*Error] with the given code and formatted message,
// cut to [MaxErrorMessage] bytes.
func Errorf(code Code, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > MaxErrorMessage {
		const ellipsis = "..."
		cut := MaxErrorMessage - len(ellipsis)
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + ellipsis
	}
	return &Error{Code: code, Message: msg}
}

// DecodeEnrollRequest parses and checks a request frame. It checks the
// shape only: the CSR must parse, but its signature and contents are the
// CA's to judge.
func DecodeEnrollRequest(p []byte) (*EnrollRequest, *x509.CertificateRequest, error) {
	var req EnrollRequest
	if err := DecodeJSON(p, &req); err != nil {
		return nil, nil, err
	}
	if len(req.CSR) == 0 {
		return nil, nil, errors.New("enroll request: missing csr")
	}
	if len(req.Token) > MaxTokenLength {
		return nil, nil, fmt.Errorf("enroll request: token of %d characters, maximum %d",
			len(req.Token), MaxTokenLength)
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, nil, fmt.Errorf("enroll request: parse csr: %w", err)
	}
	return &req, csr, nil
}

// DecodeEnrollResponse parses a response frame. It returns the CA's
// rejection as an [*Error], and otherwise both parsed certificates.
func DecodeEnrollResponse(p []byte) (cert, caCert *x509.Certificate, err error) {
	var resp EnrollResponse
	if err := DecodeJSON(p, &resp); err != nil {
		return nil, nil, err
	}
	if resp.Error != nil {
		return nil, nil, resp.Error
	}
	if cert, err = x509.ParseCertificate(resp.Certificate); err != nil {
		return nil, nil, fmt.Errorf("enroll response: parse certificate: %w", err)
	}
	if caCert, err = x509.ParseCertificate(resp.CACertificate); err != nil {
		return nil, nil, fmt.Errorf("enroll response: parse CA certificate: %w", err)
	}
	return cert, caCert, nil
}

// MaxTokenLength bounds an enrollment token. Tokens that skm issues are
// 43 characters long.
const MaxTokenLength = 128
