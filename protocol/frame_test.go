package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/skm-p2p/skm/protocol"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty payload", []byte{}},
		{"one byte payload", []byte{0x7f}},
		{"JSON payload", []byte(`{"csr":"AAEC"}`)},
		{"payload of exactly max", bytes.Repeat([]byte{0xa5}, protocol.MaxEnrollRequestSize)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := protocol.WriteFrame(&buf, tc.payload); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
			if got, want := buf.Len(), 4+len(tc.payload); got != want {
				t.Fatalf("frame is %d bytes, want %d", got, want)
			}
			if got := binary.BigEndian.Uint32(buf.Bytes()); got != uint32(len(tc.payload)) {
				t.Fatalf("header declares %d bytes, want %d", got, len(tc.payload))
			}
			got, err := protocol.ReadFrame(&buf, protocol.MaxEnrollRequestSize)
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if !bytes.Equal(got, tc.payload) {
				t.Errorf("ReadFrame returned %q, want %q", got, tc.payload)
			}
			if buf.Len() != 0 {
				t.Errorf("ReadFrame left %d unread bytes", buf.Len())
			}
		})
	}
}

func TestReadFrameStopsAtFrameEnd(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range []string{"first", "second"} {
		if err := protocol.WriteFrame(&buf, []byte(p)); err != nil {
			t.Fatalf("WriteFrame: %v", err)
		}
	}
	for _, want := range []string{"first", "second"} {
		got, err := protocol.ReadFrame(&buf, 64)
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		if string(got) != want {
			t.Errorf("ReadFrame returned %q, want %q", got, want)
		}
	}
	if _, err := protocol.ReadFrame(&buf, 64); !errors.Is(err, io.EOF) {
		t.Errorf("ReadFrame at end of input returned %v, want io.EOF", err)
	}
}

// headerOnlyReader returns a frame header and fails the test if the
// caller reads any further.
type headerOnlyReader struct {
	t      *testing.T
	header []byte
}

func (r *headerOnlyReader) Read(p []byte) (int, error) {
	if len(r.header) == 0 {
		r.t.Error("ReadFrame read past the header of an oversized frame")
		return 0, errors.New("read past the frame header")
	}
	n := copy(p, r.header)
	r.header = r.header[n:]
	return n, nil
}

func TestReadFrameRejectsOversize(t *testing.T) {
	tests := []struct {
		name     string
		declared uint32
		max      int
	}{
		{"one byte over max", protocol.MaxEnrollRequestSize + 1, protocol.MaxEnrollRequestSize},
		{"largest declared length", 1<<32 - 1, protocol.MaxEnrollResponseSize},
		{"any body with zero max", 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			header := binary.BigEndian.AppendUint32(nil, tc.declared)
			r := &headerOnlyReader{t: t, header: header}
			p, err := protocol.ReadFrame(r, tc.max)
			if !errors.Is(err, protocol.ErrFrameTooLarge) {
				t.Fatalf("ReadFrame returned %v, want ErrFrameTooLarge", err)
			}
			if p != nil {
				t.Errorf("ReadFrame returned %d bytes with its error", len(p))
			}
		})
	}
}

func TestReadFrameTruncated(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"no input", nil, io.EOF},
		{"partial header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"missing body", []byte{0, 0, 0, 4}, io.EOF},
		{"partial body", []byte{0, 0, 0, 4, 'a', 'b'}, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.ReadFrame(bytes.NewReader(tc.input), 16)
			if !errors.Is(err, tc.want) {
				t.Errorf("ReadFrame returned %v, want %v", err, tc.want)
			}
		})
	}
}

type sample struct {
	Name  string `json:"name"`
	Count int    `json:"count,omitempty"`
}

func TestJSONFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := sample{Name: "alice", Count: 3}
	if err := protocol.WriteJSON(&buf, in); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	var out sample
	if err := protocol.ReadJSON(&buf, 64, &out); err != nil {
		t.Fatalf("ReadJSON: %v", err)
	}
	if out != in {
		t.Errorf("ReadJSON decoded %+v, want %+v", out, in)
	}
}

func TestReadJSONRejectsOversize(t *testing.T) {
	var buf bytes.Buffer
	if err := protocol.WriteJSON(&buf, sample{Name: strings.Repeat("x", 100)}); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	var out sample
	if err := protocol.ReadJSON(&buf, 64, &out); !errors.Is(err, protocol.ErrFrameTooLarge) {
		t.Errorf("ReadJSON returned %v, want ErrFrameTooLarge", err)
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    sample
		wantErr string
	}{
		{name: "valid object", input: `{"name":"alice","count":2}`, want: sample{Name: "alice", Count: 2}},
		{name: "trailing whitespace allowed", input: "{\"name\":\"bob\"} \n\t", want: sample{Name: "bob"}},
		{name: "unknown field", input: `{"name":"alice","admin":true}`, wantErr: `unknown field "admin"`},
		{name: "trailing closing brace", input: `{"name":"alice"}}`, wantErr: "trailing data"},
		{name: "trailing second object", input: `{"name":"alice"}{"name":"bob"}`, wantErr: "trailing data"},
		{name: "trailing garbage bytes", input: `{"name":"alice"}xyz`, wantErr: "trailing data"},
		{name: "trailing number", input: `{"name":"alice"} 1`, wantErr: "trailing data"},
		{name: "empty input", input: ``, wantErr: "EOF"},
		{name: "truncated object", input: `{"name":"al`, wantErr: "unexpected EOF"},
		{name: "wrong field type", input: `{"name":7}`, wantErr: "cannot unmarshal"},
		{name: "array not object", input: `[]`, wantErr: "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got sample
			err := protocol.DecodeJSON([]byte(tc.input), &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DecodeJSON(%q) returned %v, want an error containing %q",
						tc.input, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeJSON(%q): %v", tc.input, err)
			}
			if got != tc.want {
				t.Errorf("DecodeJSON(%q) decoded %+v, want %+v", tc.input, got, tc.want)
			}
		})
	}
}

// FuzzReadFrame checks that ReadFrame never panics, never returns more
// than max bytes, reads no further than the frame's end, and returns
// exactly the bytes that WriteFrame would have framed.
func FuzzReadFrame(f *testing.F) {
	var valid bytes.Buffer
	if err := protocol.WriteJSON(&valid, validRequest(f)); err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Bytes(), uint16(protocol.MaxEnrollRequestSize))
	f.Add([]byte{0, 0, 0, 0}, uint16(0))
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c', 'd'}, uint16(3))
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'}, uint16(2))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(0xffff))
	f.Add([]byte{0, 0, 1}, uint16(16))

	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		r := bytes.NewReader(data)
		p, err := protocol.ReadFrame(r, int(max))
		if len(data) < 4 {
			if err == nil {
				t.Fatalf("ReadFrame accepted %d bytes, shorter than a header", len(data))
			}
			return
		}
		declared := binary.BigEndian.Uint32(data)
		if declared > uint32(max) {
			if !errors.Is(err, protocol.ErrFrameTooLarge) {
				t.Fatalf("frame of %d bytes with max %d: got %v, want ErrFrameTooLarge",
					declared, max, err)
			}
			if r.Len() != len(data)-4 {
				t.Fatalf("ReadFrame consumed %d body bytes of an oversized frame", len(data)-4-r.Len())
			}
			return
		}
		if errors.Is(err, protocol.ErrFrameTooLarge) {
			t.Fatalf("frame of %d bytes with max %d: got ErrFrameTooLarge", declared, max)
		}
		if uint64(len(data)) < 4+uint64(declared) {
			if err == nil {
				t.Fatalf("ReadFrame accepted a frame of %d bytes with only %d body bytes",
					declared, len(data)-4)
			}
			return
		}
		if err != nil {
			t.Fatalf("ReadFrame rejected a complete frame: %v", err)
		}
		end := 4 + int(declared)
		if !bytes.Equal(p, data[4:end]) {
			t.Fatalf("ReadFrame returned %q, want %q", p, data[4:end])
		}
		if r.Len() != len(data)-end {
			t.Fatalf("ReadFrame left %d bytes, want %d", r.Len(), len(data)-end)
		}
		var again bytes.Buffer
		if err := protocol.WriteFrame(&again, p); err != nil {
			t.Fatalf("WriteFrame: %v", err)
		}
		if !bytes.Equal(again.Bytes(), data[:end]) {
			t.Fatalf("WriteFrame produced %x, want %x", again.Bytes(), data[:end])
		}
	})
}
