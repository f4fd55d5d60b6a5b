package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/skm-p2p/skm/protocol"
)

// validRequest returns a request with a real CSR and a token and
// continuity signature of realistic sizes.
func validRequest(t testing.TB) protocol.EnrollRequest {
	t.Helper()
	return protocol.EnrollRequest{
		CSR:        newCSR(t, newIdentity(t, "alice", 1)),
		Token:      strings.Repeat("t", 43),
		Continuity: bytes.Repeat([]byte{0x5c}, 64),
	}
}

// validResponse returns a response that carries two real certificates.
func validResponse(t testing.TB) protocol.EnrollResponse {
	t.Helper()
	return protocol.EnrollResponse{
		Certificate:   newEd25519Cert(t, newIdentity(t, "alice", 1)).Raw,
		CACertificate: newEd25519Cert(t, newIdentity(t, "ca", 1)).Raw,
	}
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	p, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnrollRequestRoundTrip(t *testing.T) {
	id := newIdentity(t, "alice", 4)
	req := protocol.EnrollRequest{
		CSR:        newCSR(t, id),
		Token:      strings.Repeat("k", protocol.MaxTokenLength),
		Continuity: bytes.Repeat([]byte{1}, 64),
	}
	var buf bytes.Buffer
	if err := protocol.WriteJSON(&buf, req); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	// The largest token and a continuity signature must still fit.
	frame, err := protocol.ReadFrame(&buf, protocol.MaxEnrollRequestSize)
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	got, csr, err := protocol.DecodeEnrollRequest(frame)
	if err != nil {
		t.Fatalf("DecodeEnrollRequest: %v", err)
	}
	if !bytes.Equal(got.CSR, req.CSR) {
		t.Error("decoded CSR differs from the one sent")
	}
	if got.Token != req.Token {
		t.Errorf("decoded token %q, want %q", got.Token, req.Token)
	}
	if !bytes.Equal(got.Continuity, req.Continuity) {
		t.Error("decoded continuity signature differs from the one sent")
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("decoded CSR signature: %v", err)
	}
	gotID, err := protocol.ParseIdentity(csr.Subject.CommonName, csr.URIs)
	if err != nil {
		t.Fatalf("ParseIdentity of decoded CSR: %v", err)
	}
	if gotID != id {
		t.Errorf("decoded CSR binds %+v, want %+v", gotID, id)
	}
}

func TestDecodeEnrollRequestRejects(t *testing.T) {
	csr := newCSR(t, newIdentity(t, "alice", 1))
	valid := string(marshal(t, protocol.EnrollRequest{CSR: csr}))
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{"missing CSR", `{"token":"abc"}`, "missing csr"},
		{"null CSR", `{"csr":null}`, "missing csr"},
		{"empty CSR", `{"csr":""}`, "missing csr"},
		{"CSR not base64", `{"csr":"!!!"}`, "illegal base64"},
		{"CSR not DER", `{"csr":"AAECAw=="}`, "parse csr"},
		{"certificate instead of CSR",
			string(marshal(t, protocol.EnrollRequest{CSR: newEd25519Cert(t, newIdentity(t, "alice", 1)).Raw})),
			"parse csr"},
		{"CSR with trailing bytes",
			string(marshal(t, protocol.EnrollRequest{CSR: append(bytes.Clone(csr), 0)})), "parse csr"},
		{"token too long",
			string(marshal(t, protocol.EnrollRequest{CSR: csr, Token: strings.Repeat("k", protocol.MaxTokenLength+1)})),
			"token of 129 characters"},
		{"unknown field", strings.TrimSuffix(valid, "}") + `,"admin":true}`, `unknown field "admin"`},
		{"trailing closing brace", valid + "}", "trailing data"},
		{"two requests", valid + valid, "trailing data"},
		{"JSON array", `[]`, "cannot unmarshal"},
		{"empty frame", ``, "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, parsed, err := protocol.DecodeEnrollRequest([]byte(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeEnrollRequest returned %v, want an error containing %q", err, tc.wantErr)
			}
			if req != nil || parsed != nil {
				t.Error("DecodeEnrollRequest returned a request with its error")
			}
		})
	}
}

func TestEnrollResponseRoundTrip(t *testing.T) {
	resp := validResponse(t)
	var buf bytes.Buffer
	if err := protocol.WriteJSON(&buf, resp); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	frame, err := protocol.ReadFrame(&buf, protocol.MaxEnrollResponseSize)
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	cert, caCert, err := protocol.DecodeEnrollResponse(frame)
	if err != nil {
		t.Fatalf("DecodeEnrollResponse: %v", err)
	}
	if !bytes.Equal(cert.Raw, resp.Certificate) {
		t.Error("decoded certificate differs from the one sent")
	}
	if !bytes.Equal(caCert.Raw, resp.CACertificate) {
		t.Error("decoded CA certificate differs from the one sent")
	}
}

func TestEnrollResponseRejection(t *testing.T) {
	sent := protocol.Errorf(protocol.CodeTokenUsed, "token used at %s", "noon")
	frame := marshal(t, protocol.EnrollResponse{Error: sent})
	cert, caCert, err := protocol.DecodeEnrollResponse(frame)
	if cert != nil || caCert != nil {
		t.Error("DecodeEnrollResponse returned certificates with a rejection")
	}
	var rejected *protocol.Error
	if !errors.As(err, &rejected) {
		t.Fatalf("DecodeEnrollResponse returned %v, want a *protocol.Error", err)
	}
	if *rejected != *sent {
		t.Errorf("decoded rejection %+v, want %+v", rejected, sent)
	}
	if got, want := rejected.Error(), "token-used: token used at noon"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestDecodeEnrollResponseRejects(t *testing.T) {
	resp := validResponse(t)
	valid := string(marshal(t, resp))
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{"empty object", `{}`, "parse certificate"},
		{"missing CA certificate",
			string(marshal(t, protocol.EnrollResponse{Certificate: resp.Certificate})), "parse CA certificate"},
		{"certificate not DER", `{"certificate":"AAEC","ca_certificate":"AAEC"}`, "parse certificate"},
		{"unknown field", strings.TrimSuffix(valid, "}") + `,"extra":1}`, `unknown field "extra"`},
		{"trailing closing brace", valid + "}", "trailing data"},
		{"error of wrong type", `{"error":"no"}`, "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := protocol.DecodeEnrollResponse([]byte(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeEnrollResponse returned %v, want an error containing %q", err, tc.wantErr)
			}
			var rejected *protocol.Error
			if errors.As(err, &rejected) {
				t.Errorf("malformed response decoded as the rejection %+v", rejected)
			}
		})
	}
}

// FuzzDecodeEnrollRequest checks that DecodeEnrollRequest never panics and
// that a request it accepts re-encodes to one that decodes to the same
// fields and the same CSR.
func FuzzDecodeEnrollRequest(f *testing.F) {
	f.Add(marshal(f, validRequest(f)))
	f.Add(marshal(f, protocol.EnrollRequest{CSR: newCSR(f, newIdentity(f, "bob", 2))}))
	f.Add([]byte(`{"csr":"AAEC","token":"x"}`))
	f.Add([]byte(`{"csr":null,"continuity":""}`))
	f.Add([]byte(`{"CSR":"AAEC","Token":"x"}}`))
	f.Add([]byte(`[1,2,3]`))

	f.Fuzz(func(t *testing.T, data []byte) {
		req, csr, err := protocol.DecodeEnrollRequest(data)
		if err != nil {
			if req != nil || csr != nil {
				t.Fatal("DecodeEnrollRequest returned a request with its error")
			}
			return
		}
		if len(req.CSR) == 0 || len(req.Token) > protocol.MaxTokenLength {
			t.Fatalf("DecodeEnrollRequest accepted %d CSR bytes and a %d-byte token",
				len(req.CSR), len(req.Token))
		}
		if !bytes.Equal(csr.Raw, req.CSR) {
			t.Fatal("parsed CSR is not the CSR bytes of the request")
		}
		// The CA runs these on every accepted request, so they must not
		// panic either.
		_ = csr.CheckSignature()
		_, _ = protocol.ParseIdentity(csr.Subject.CommonName, csr.URIs)

		again, csr2, err := protocol.DecodeEnrollRequest(marshal(t, req))
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		if !bytes.Equal(again.CSR, req.CSR) || again.Token != req.Token ||
			!bytes.Equal(again.Continuity, req.Continuity) {
			t.Fatalf("round trip returned %+v, want %+v", again, req)
		}
		if !bytes.Equal(csr2.Raw, csr.Raw) {
			t.Fatal("round trip changed the CSR")
		}
	})
}

// FuzzDecodeEnrollResponse checks that DecodeEnrollResponse never panics,
// that it returns either a rejection or two certificates, and that both
// kinds of response survive a round trip.
func FuzzDecodeEnrollResponse(f *testing.F) {
	f.Add(marshal(f, validResponse(f)))
	f.Add(marshal(f, protocol.EnrollResponse{Error: protocol.Errorf(protocol.CodeBadToken, "unknown token")}))
	f.Add([]byte(`{"error":null,"certificate":"AAEC"}`))
	f.Add([]byte(`{"error":{"code":"","message":""}}`))
	f.Add([]byte(`{"ca_certificate":"AAEC"}}`))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, data []byte) {
		cert, caCert, err := protocol.DecodeEnrollResponse(data)
		var rejected *protocol.Error
		if errors.As(err, &rejected) {
			frame := marshal(t, protocol.EnrollResponse{Error: rejected})
			_, _, err := protocol.DecodeEnrollResponse(frame)
			var again *protocol.Error
			if !errors.As(err, &again) {
				t.Fatalf("re-encoded rejection decoded as %v", err)
			}
			if *again != *rejected {
				t.Fatalf("round trip returned %+v, want %+v", again, rejected)
			}
			return
		}
		if err != nil {
			if cert != nil || caCert != nil {
				t.Fatal("DecodeEnrollResponse returned certificates with its error")
			}
			return
		}
		if cert == nil || caCert == nil {
			t.Fatal("DecodeEnrollResponse returned no error and no certificates")
		}
		// The node runs these on every accepted response.
		_, _ = protocol.CertIdentity(cert)
		_, _ = protocol.CertPeerID(caCert)
		_ = protocol.Fingerprint(caCert)

		frame := marshal(t, protocol.EnrollResponse{Certificate: cert.Raw, CACertificate: caCert.Raw})
		cert2, caCert2, err := protocol.DecodeEnrollResponse(frame)
		if err != nil {
			t.Fatalf("re-encoded response rejected: %v", err)
		}
		if !bytes.Equal(cert2.Raw, cert.Raw) || !bytes.Equal(caCert2.Raw, caCert.Raw) {
			t.Fatal("round trip changed a certificate")
		}
	})
}
