package localapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzRequest has the field types of the local API's request bodies.
type fuzzRequest struct {
	User        string `json:"user"`
	TTLSeconds  int64  `json:"ttl_seconds"`
	Reason      int    `json:"reason"`
	Certificate []byte `json:"certificate,omitempty"`
	AskCA       bool   `json:"ask_ca,omitempty"`
}

func (r fuzzRequest) equal(o fuzzRequest) bool {
	return r.User == o.User && r.TTLSeconds == o.TTLSeconds && r.Reason == o.Reason &&
		bytes.Equal(r.Certificate, o.Certificate) && r.AskCA == o.AskCA
}

// readBody runs ReadJSON on a POST request with body, limited to
// MaxRequestSize as Serve limits it.
func readBody(body []byte) (fuzzRequest, error) {
	req := httptest.NewRequest(http.MethodPost, "/v1/fuzz", bytes.NewReader(body))
	req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, MaxRequestSize)
	var v fuzzRequest
	err := ReadJSON(req, &v)
	return v, err
}

// FuzzReadJSON checks that ReadJSON never panics, that it accepts a body
// exactly when it is one valid request, with nothing but white space
// after it, within MaxRequestSize bytes, and that an accepted request
// survives a round trip.
func FuzzReadJSON(f *testing.F) {
	// Bodies at the size limit are checked here, not seeded: the fuzzer
	// spends most of its time minimizing inputs that large.
	atLimit := `{"user":"` + strings.Repeat("a", MaxRequestSize-len(`{"user":""}`)) + `"}`
	if _, err := readBody([]byte(atLimit)); err != nil {
		f.Fatalf("rejected a body of exactly %d bytes: %v", len(atLimit), err)
	}
	overLimit := strings.Replace(atLimit, "a", "aa", 1)
	if _, err := readBody([]byte(overLimit)); err == nil || !strings.Contains(err.Error(), "exceeds") {
		f.Fatalf("body of %d bytes: error %v, want one that names the size limit", len(overLimit), err)
	}

	f.Add([]byte(`{"user":"alice","ttl_seconds":3600}`))
	f.Add([]byte(`{"user":"bob","reason":1,"certificate":"MAA=","ask_ca":true}`))
	f.Add([]byte(`{"user":"alice","extra":1}`))
	f.Add([]byte(`{"user":"alice"} trailing`))
	f.Add([]byte(`{"ttl_seconds":1e3}`))
	f.Add([]byte(`{"certificate":"not base64"}`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := readBody(body)

		// The same decoding without a size limit is the reference.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var want fuzzRequest
		refErr := dec.Decode(&want)
		if refErr == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
			refErr = errors.New("data after the JSON value")
		}
		fits := int64(len(bytes.TrimRight(body, " \t\r\n"))) <= MaxRequestSize
		if err != nil {
			if refErr == nil && fits {
				t.Fatalf("rejected a valid request of %d bytes: %v", len(body), err)
			}
			return
		}
		if refErr != nil {
			t.Fatalf("accepted a body that does not decode: %v", refErr)
		}
		if !fits {
			t.Fatalf("accepted a request of %d bytes, maximum %d", len(body), MaxRequestSize)
		}
		if !v.equal(want) {
			t.Fatalf("decoded %+v, want %+v", v, want)
		}
		encoded, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if len(encoded) > MaxRequestSize {
			// Escaping can make the encoding longer than the body, as
			// "<" becomes "\u003c".
			return
		}
		again, err := readBody(encoded)
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		if !again.equal(v) {
			t.Fatalf("round trip returned %+v, want %+v", again, v)
		}
	})
}
