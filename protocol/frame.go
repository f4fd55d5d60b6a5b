package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// frameHeaderSize is the length of the big-endian size that precedes
// every frame.
const frameHeaderSize = 4

// ErrFrameTooLarge is returned when a frame's declared length exceeds the
// maximum its protocol allows.
var ErrFrameTooLarge = errors.New("frame too large")

// WriteFrame writes p as one frame.
func WriteFrame(w io.Writer, p []byte) error {
	if uint64(len(p)) > 1<<32-1 {
		return fmt.Errorf("write frame: %d bytes: %w", len(p), ErrFrameTooLarge)
	}
	buf := make([]byte, frameHeaderSize+len(p))
	binary.BigEndian.PutUint32(buf, uint32(len(p)))
	copy(buf[frameHeaderSize:], p)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame of at most max bytes. It returns
// [ErrFrameTooLarge] without reading the body if the frame is larger.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var header [frameHeaderSize]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(header[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes, maximum %d: %w", n, max, ErrFrameTooLarge)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, fmt.Errorf("read frame body: %w", err)
	}
	return p, nil
}

// WriteJSON encodes v as JSON and writes it as one frame.
func WriteJSON(w io.Writer, v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteFrame(w, p)
}

// ReadJSON reads one frame of at most max bytes and decodes it into v
// with [DecodeJSON].
func ReadJSON(r io.Reader, max int, v any) error {
	p, err := ReadFrame(r, max)
	if err != nil {
		return err
	}
	return DecodeJSON(p, v)
}

// DecodeJSON decodes exactly one JSON value from p into v. Unknown fields
// and trailing data are errors.
func DecodeJSON(p []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode %T: trailing data after the JSON value", v)
	}
	return nil
}
