package protocol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// marshalJSON returns the JSON encoding of v.
func marshalJSON(t testing.TB, v any) []byte {
	t.Helper()
	p, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkRejectionRoundTrip checks that a CA rejection, once re-encoded
// in a response of the same kind by wrap and decoded by decode, comes
// back unchanged.
func checkRejectionRoundTrip(t *testing.T, rejected *Error, wrap func(*Error) any, decode func([]byte) error) {
	t.Helper()
	err := decode(marshalJSON(t, wrap(rejected)))
	var again *Error
	if !errors.As(err, &again) {
		t.Fatalf("re-encoded rejection decoded as %v", err)
	}
	if *again != *rejected {
		t.Fatalf("round trip returned %+v, want %+v", again, rejected)
	}
}

// FuzzDecodeDirectoryRequest checks that DecodeDirectoryRequest never
// panics, that what it accepts is within the protocol's limits, and that
// an accepted request survives a round trip.
func FuzzDecodeDirectoryRequest(f *testing.F) {
	f.Add(marshalJSON(f, DirectoryRequest{
		Announce: []string{"/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"},
		Lookup:   "alice",
	}))
	f.Add([]byte(`{"lookup":"bob"}`))
	f.Add([]byte(`{"announce":["/ip4/127.0.0.1/tcp/1"]}`))
	f.Add([]byte(`{"announce":[],"lookup":""}`))
	f.Add([]byte(`{"lookup":"Bob Smith"}`))
	f.Add([]byte(`{"lookup":"bob","extra":true}`))
	f.Add([]byte(`{"announce":["a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a"]}`))

	f.Fuzz(func(t *testing.T, p []byte) {
		req, err := DecodeDirectoryRequest(p)
		if err != nil {
			if req != nil {
				t.Fatal("DecodeDirectoryRequest returned a request with its error")
			}
			return
		}
		if len(req.Announce) > MaxAnnouncedAddrs {
			t.Fatalf("accepted %d addresses, maximum %d", len(req.Announce), MaxAnnouncedAddrs)
		}
		if req.Lookup == "" && len(req.Announce) == 0 {
			t.Fatal("accepted a request with neither announce nor lookup")
		}
		if req.Lookup != "" {
			if err := ValidateUserName(req.Lookup); err != nil {
				t.Fatalf("accepted an invalid lookup name: %v", err)
			}
		}
		again, err := DecodeDirectoryRequest(marshalJSON(t, req))
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		if again.Lookup != req.Lookup || !slices.Equal(again.Announce, req.Announce) {
			t.Fatalf("round trip returned %+v, want %+v", again, req)
		}
	})
}

// FuzzDecodeDirectoryResponse checks that DecodeDirectoryResponse never
// panics, that it returns a rejection, an error or a response within the
// address limit, and that rejections and responses survive a round trip.
func FuzzDecodeDirectoryResponse(f *testing.F) {
	fx := newFixture(f)
	f.Add(marshalJSON(f, DirectoryResponse{
		Certificate: fx.alice.creds.Cert.Raw,
		Addrs:       []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + fx.alice.peer.String()},
	}))
	f.Add(marshalJSON(f, DirectoryResponse{Error: Errorf(CodeNotFound, "the CA has no certificate for user %q", "bob")}))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"error":null,"addrs":null}`))
	f.Add([]byte(`{"certificate":"AA==","error":{"code":"","message":""}}`))
	f.Add([]byte(`{"certificate":"not base64"}`))

	f.Fuzz(func(t *testing.T, p []byte) {
		resp, err := DecodeDirectoryResponse(p)
		var rejected *Error
		if errors.As(err, &rejected) {
			checkRejectionRoundTrip(t, rejected,
				func(e *Error) any { return DirectoryResponse{Error: e} },
				func(p []byte) error { _, err := DecodeDirectoryResponse(p); return err })
			return
		}
		if err != nil {
			if resp != nil {
				t.Fatal("DecodeDirectoryResponse returned a response with its error")
			}
			return
		}
		if resp.Error != nil {
			t.Fatal("DecodeDirectoryResponse returned a rejection without an error")
		}
		if len(resp.Addrs) > MaxAnnouncedAddrs {
			t.Fatalf("accepted %d addresses, maximum %d", len(resp.Addrs), MaxAnnouncedAddrs)
		}
		again, err := DecodeDirectoryResponse(marshalJSON(t, resp))
		if err != nil {
			t.Fatalf("re-encoded response rejected: %v", err)
		}
		if !bytes.Equal(again.Certificate, resp.Certificate) || !slices.Equal(again.Addrs, resp.Addrs) {
			t.Fatalf("round trip returned %+v, want %+v", again, resp)
		}
	})
}

// FuzzDecodeRevokeRequest checks that DecodeRevokeRequest never panics,
// that it accepts only requests with a certificate, a signature and a
// reason code in range, and that those survive a round trip.
func FuzzDecodeRevokeRequest(f *testing.F) {
	fx := newFixture(f)
	der := fx.alice.creds.Cert.Raw
	f.Add(marshalJSON(f, RevokeRequest{
		Certificate: der,
		Reason:      1,
		Signature:   ed25519.Sign(fx.alice.creds.Key, RevokeMessage(der, 1)),
	}))
	f.Add([]byte(`{"certificate":"AA==","reason":0,"signature":"AA=="}`))
	f.Add([]byte(`{"certificate":"AA==","reason":11,"signature":"AA=="}`))
	f.Add([]byte(`{"certificate":"AA==","reason":-1,"signature":"AA=="}`))
	f.Add([]byte(`{"certificate":"","signature":"AA=="}`))
	f.Add([]byte(`{"certificate":"AA==","reason":1e3,"signature":"AA=="}`))

	f.Fuzz(func(t *testing.T, p []byte) {
		req, err := DecodeRevokeRequest(p)
		if err != nil {
			if req != nil {
				t.Fatal("DecodeRevokeRequest returned a request with its error")
			}
			return
		}
		if len(req.Certificate) == 0 || len(req.Signature) == 0 {
			t.Fatal("accepted a request without a certificate or signature")
		}
		if req.Reason < 0 || req.Reason > 10 {
			t.Fatalf("accepted reason code %d", req.Reason)
		}
		// The CA builds this message to check the signature of a request.
		RevokeMessage(req.Certificate, req.Reason)
		again, err := DecodeRevokeRequest(marshalJSON(t, req))
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		if !bytes.Equal(again.Certificate, req.Certificate) || again.Reason != req.Reason ||
			!bytes.Equal(again.Signature, req.Signature) {
			t.Fatalf("round trip returned %+v, want %+v", again, req)
		}
	})
}

// FuzzDecodeRevokeResponse checks that DecodeRevokeResponse never panics
// and that rejections and responses survive a round trip.
func FuzzDecodeRevokeResponse(f *testing.F) {
	f.Add(marshalJSON(f, RevokeResponse{CRLNumber: "7"}))
	f.Add(marshalJSON(f, RevokeResponse{Error: Errorf(CodeKeyRevoked, "certificate %s is already revoked", "1F2E")}))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"crl_number":7}`))
	f.Add([]byte(`{"crl_number":"7","error":{}}`))

	f.Fuzz(func(t *testing.T, p []byte) {
		resp, err := DecodeRevokeResponse(p)
		var rejected *Error
		if errors.As(err, &rejected) {
			checkRejectionRoundTrip(t, rejected,
				func(e *Error) any { return RevokeResponse{Error: e} },
				func(p []byte) error { _, err := DecodeRevokeResponse(p); return err })
			return
		}
		if err != nil {
			if resp != nil {
				t.Fatal("DecodeRevokeResponse returned a response with its error")
			}
			return
		}
		again, err := DecodeRevokeResponse(marshalJSON(t, resp))
		if err != nil {
			t.Fatalf("re-encoded response rejected: %v", err)
		}
		if *again != *resp {
			t.Fatalf("round trip returned %+v, want %+v", again, resp)
		}
	})
}

// FuzzDecodeStatusResponse checks that DecodeStatusResponse never
// panics, that it returns an answer with a signature unless it returns
// an error, and that rejections and answers survive a round trip with
// the same signing message, so that a valid signature stays valid.
func FuzzDecodeStatusResponse(f *testing.F) {
	fx := newFixture(f)
	answer := &StatusAnswer{
		Serial:    "1F2E3D",
		Status:    "revoked",
		Reason:    "keyCompromise",
		RevokedAt: fx.now.UTC().Truncate(time.Second),
		Produced:  fx.now.UTC().Truncate(time.Second),
		CRLNumber: "4",
	}
	msg, err := StatusSigningMessage(answer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(marshalJSON(f, StatusResponse{Answer: answer, Signature: ed25519.Sign(fx.ca.key, msg)}))
	f.Add(marshalJSON(f, StatusResponse{Error: Errorf(CodeNotFound, "no such certificate")}))
	f.Add([]byte(`{"answer":{"serial":"01","status":"good","produced":"2026-01-02T03:04:05+01:00","crl_number":"1"},"signature":"AA=="}`))
	f.Add([]byte(`{"answer":{"produced":"not a time"},"signature":"AA=="}`))
	f.Add([]byte(`{"answer":null,"signature":"AA=="}`))
	f.Add([]byte(`{"answer":{},"signature":""}`))

	f.Fuzz(func(t *testing.T, p []byte) {
		resp, err := DecodeStatusResponse(p)
		var rejected *Error
		if errors.As(err, &rejected) {
			checkRejectionRoundTrip(t, rejected,
				func(e *Error) any { return StatusResponse{Error: e} },
				func(p []byte) error { _, err := DecodeStatusResponse(p); return err })
			return
		}
		if err != nil {
			if resp != nil {
				t.Fatal("DecodeStatusResponse returned a response with its error")
			}
			return
		}
		if resp.Answer == nil || len(resp.Signature) == 0 {
			t.Fatal("accepted a response without an answer or signature")
		}
		msg, msgErr := StatusSigningMessage(resp.Answer)
		frame, err := json.Marshal(resp)
		if err != nil {
			// An answer that cannot be encoded cannot be signed either,
			// so the node rejects it when it checks the signature.
			if msgErr == nil {
				t.Fatalf("response does not encode, but its answer does: %v", err)
			}
			return
		}
		again, err := DecodeStatusResponse(frame)
		if err != nil {
			t.Fatalf("re-encoded response rejected: %v", err)
		}
		if !bytes.Equal(again.Signature, resp.Signature) || !sameAnswer(again.Answer, resp.Answer) {
			t.Fatalf("round trip returned %+v, want %+v", again.Answer, resp.Answer)
		}
		msg2, err := StatusSigningMessage(again.Answer)
		if err != nil || !bytes.Equal(msg2, msg) {
			t.Fatalf("round trip changed the signing message (error %v)", err)
		}
	})
}

// sameAnswer reports whether a and b state the same, comparing times as
// instants.
func sameAnswer(a, b *StatusAnswer) bool {
	return a.Serial == b.Serial && a.Status == b.Status && a.Reason == b.Reason &&
		a.CRLNumber == b.CRLNumber && a.RevokedAt.Equal(b.RevokedAt) && a.Produced.Equal(b.Produced)
}

// FuzzInitiatorHandshake feeds arbitrary bytes to an initiator as the
// responder's side of the stream. A real responder's recording is a seed,
// but it cannot succeed, because the initiator's ephemeral key is fresh.
func FuzzInitiatorHandshake(f *testing.F) {
	fx := newFixture(f)
	cfg := fx.config(fx.alice, fx.bob)
	recorded := recordResponder(f, fx)
	f.Add(recorded)
	f.Add(recorded[:len(recorded)/2])
	f.Add(frame(make([]byte, 32)))
	f.Add(frame(randomBytes(f, 500)))
	f.Add(append(bytes.Clone(recorded), recorded...))
	f.Add([]byte{0, 0, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, stream []byte) {
		s, err := Initiate(&scriptedConn{r: bytes.NewReader(stream)}, cfg)
		if err == nil {
			s.Close()
			t.Fatal("handshake with a scripted responder succeeded")
		}
		if !errors.Is(err, ErrHandshake) {
			t.Fatalf("error %v does not wrap %v", err, ErrHandshake)
		}
	})
}

// recordResponder returns what bob sends in a complete handshake with
// alice: message 2 and his confirm frame.
func recordResponder(t testing.TB, fx *fixture) []byte {
	t.Helper()
	var mu bytesMutex
	c1, c2 := relay(t, func(from role, _ int, frame []byte) bool {
		if from == roleResponder {
			mu.append(frame)
		}
		return true
	})
	o := handshakeOver(c1, c2, initiator(fx.config(fx.alice, fx.bob)), responder(fx.config(fx.bob, fx.alice)))
	if o.initiatorErr != nil || o.responderErr != nil {
		t.Fatalf("handshake: initiator: %v; responder: %v", o.initiatorErr, o.responderErr)
	}
	return mu.bytes()
}

// FuzzErrorf checks that a rejection made by Errorf keeps a prefix of its
// message and, encoded as JSON, fits in the smallest response frame
// whatever the message quotes.
func FuzzErrorf(f *testing.F) {
	f.Add("user name \"alice\" is taken")
	f.Add(strings.Repeat("\x01", MaxErrorMessage+1))
	f.Add(strings.Repeat("é", MaxErrorMessage))
	f.Add(strings.Repeat("<\xff", 4*MaxErrorMessage))

	f.Fuzz(func(t *testing.T, msg string) {
		e := Errorf(CodeBadRequest, "%s", msg)
		if len(e.Message) > MaxErrorMessage {
			t.Fatalf("message of %d bytes, maximum %d", len(e.Message), MaxErrorMessage)
		}
		if len(msg) <= MaxErrorMessage && e.Message != msg {
			t.Fatalf("short message changed to %q", e.Message)
		}
		kept, cut := strings.CutSuffix(e.Message, "...")
		if len(msg) > MaxErrorMessage && (!cut || !strings.HasPrefix(msg, kept)) {
			t.Fatalf("cut message %q is not a prefix of the original", e.Message)
		}
		if n := len(marshalJSON(t, RevokeResponse{Error: e})); n > MaxRevokeResponseSize {
			t.Fatalf("rejection encodes to %d bytes, maximum %d", n, MaxRevokeResponseSize)
		}
	})
}
