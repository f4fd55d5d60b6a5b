package protocol

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// This file holds the state of each direction of a session: the frame
// header, the nonce and associated data, and the sealing and opening of
// frames with the key ratchet.

// frameHeader is the cleartext header of a session frame.
type frameHeader struct {
	typ   FrameType
	flags uint8
	epoch uint32
	seq   uint64
}

// put writes h to b in wire order: version, type, flags, a reserved zero
// byte, the key epoch and the sequence number, both big-endian.
func (h frameHeader) put(b []byte) {
	b[0] = sessionVersion
	b[1] = byte(h.typ)
	b[2] = h.flags
	b[3] = 0
	binary.BigEndian.PutUint32(b[4:8], h.epoch)
	binary.BigEndian.PutUint64(b[8:16], h.seq)
}

// parseFrameHeader checks the header of frame. Confirm frames carry
// sequence number 0 in epoch 0, and only the handshake expects them.
func parseFrameHeader(frame []byte, confirm bool) (frameHeader, error) {
	if len(frame) < sessionHeaderSize+sessionTagSize {
		return frameHeader{}, fmt.Errorf("%w: %d bytes, minimum %d",
			ErrMalformedFrame, len(frame), sessionHeaderSize+sessionTagSize)
	}
	h := frameHeader{
		typ:   FrameType(frame[1]),
		flags: frame[2],
		epoch: binary.BigEndian.Uint32(frame[4:8]),
		seq:   binary.BigEndian.Uint64(frame[8:16]),
	}
	switch {
	case frame[0] != sessionVersion:
		return h, fmt.Errorf("%w: version %d, want %d", ErrMalformedFrame, frame[0], sessionVersion)
	case h.flags != 0 || frame[3] != 0:
		return h, fmt.Errorf("%w: flags or reserved byte set", ErrMalformedFrame)
	case confirm && (h.typ != FrameConfirm || h.seq != 0 || h.epoch != 0):
		return h, fmt.Errorf("%w: %v frame with sequence number %d in epoch %d, want a confirm frame with 0 in 0",
			ErrMalformedFrame, h.typ, h.seq, h.epoch)
	case !confirm && h.typ != FrameData && h.typ != FrameAck && h.typ != FrameClose:
		return h, fmt.Errorf("%w: unexpected %v frame", ErrMalformedFrame, h.typ)
	case !confirm && h.seq == 0:
		return h, fmt.Errorf("%w: %v frame with sequence number 0", ErrMalformedFrame, h.typ)
	}
	return h, nil
}

// frameNonce returns the GCM nonce of sequence number seq: four zero
// bytes, then seq big-endian. A direction never repeats a sequence
// number, and rekeying changes the key, so no (key, nonce) pair repeats.
func frameNonce(seq uint64) [12]byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

// frameAAD returns the associated data of a frame: the session ID, then
// the frame header.
func frameAAD(id *[32]byte, header []byte) [32 + sessionHeaderSize]byte {
	var ad [32 + sessionHeaderSize]byte
	copy(ad[:32], id[:])
	copy(ad[32:], header)
	return ad
}

// sender is the sending direction of a session.
type sender struct {
	mu    sync.Mutex
	key   [32]byte
	aead  cipher.AEAD
	epoch uint32
	// seq is the sequence number of the next frame. The handshake sends
	// the Confirm frame as 0.
	seq uint64
	// sealed counts the frames sealed in the current epoch.
	sealed     uint64
	epochStart time.Time

	now                func() time.Time
	rekeyAfterMessages uint64
	rekeyAfterTime     time.Duration
	err                error
	// buf is reused for every frame sealed, which is safe because the
	// writer writes each frame, under mu, before it seals the next.
	buf []byte
}

// seal returns the wire form of one frame, length prefix included, and
// advances the sequence number. The result is valid until the next seal.
func (d *sender) seal(id *[32]byte, typ FrameType, body []byte) ([]byte, error) {
	if d.seq == math.MaxUint64 {
		return nil, errors.New("write session frame: sequence numbers exhausted, start a new session")
	}
	if d.sealed >= d.rekeyAfterMessages || d.now().Sub(d.epochStart) >= d.rekeyAfterTime {
		if err := d.rekey(); err != nil {
			return nil, err
		}
	}

	size := frameHeaderSize + sessionHeaderSize + len(body) + sessionTagSize
	if cap(d.buf) < size {
		d.buf = make([]byte, 0, size)
	}
	buf := d.buf[:frameHeaderSize+sessionHeaderSize]
	header := buf[frameHeaderSize:]
	frameHeader{typ: typ, epoch: d.epoch, seq: d.seq}.put(header)
	nonce := frameNonce(d.seq)
	ad := frameAAD(id, header)
	buf = d.aead.Seal(buf, nonce[:], body, ad[:])
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-frameHeaderSize))
	d.seq++
	d.sealed++
	return buf, nil
}

// rekey replaces the sending key with the next one in the ratchet and
// zeroes the old key.
func (d *sender) rekey() error {
	if d.epoch == math.MaxUint32 {
		return errors.New("write session frame: key epochs exhausted, start a new session")
	}
	next, aead, err := ratchet(&d.key)
	if err != nil {
		return err
	}
	clear(d.key[:])
	d.key, d.aead = next, aead
	clear(next[:])
	d.epoch++
	d.sealed = 0
	d.epochStart = d.now()
	return nil
}

func (d *sender) wipe() {
	clear(d.key[:])
	d.aead = nil
}

// receiver is the receiving direction of a session.
type receiver struct {
	mu     sync.Mutex
	key    [32]byte
	aead   cipher.AEAD
	epoch  uint32
	window replayWindow
	err    error
}

// open authenticates and decrypts frame, the bytes after the length
// prefix. The replay window and the key epoch change only after the
// frame is authenticated.
func (d *receiver) open(id *[32]byte, frame []byte, confirm bool) (FrameType, []byte, error) {
	h, err := parseFrameHeader(frame, confirm)
	if err != nil {
		return 0, nil, err
	}
	if err := d.window.check(h.seq); err != nil {
		return 0, nil, fmt.Errorf("%w: sequence number %d, highest accepted %d",
			err, h.seq, d.window.highest)
	}

	aead := d.aead
	var next [32]byte
	defer clear(next[:])
	switch {
	case h.epoch == d.epoch:
	case h.epoch == d.epoch+1 && d.epoch < math.MaxUint32:
		if next, aead, err = ratchet(&d.key); err != nil {
			return 0, nil, err
		}
	default:
		return 0, nil, fmt.Errorf("%w: epoch %d, current %d", ErrKeyEpoch, h.epoch, d.epoch)
	}

	nonce := frameNonce(h.seq)
	ad := frameAAD(id, frame[:sessionHeaderSize])
	body, err := aead.Open(frame[sessionHeaderSize:sessionHeaderSize], nonce[:],
		frame[sessionHeaderSize:], ad[:])
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v frame %d", ErrDecrypt, h.typ, h.seq)
	}

	d.window.accept(h.seq)
	if h.epoch != d.epoch {
		clear(d.key[:])
		d.key, d.aead = next, aead
		d.epoch = h.epoch
	}
	return h.typ, body, nil
}

func (d *receiver) wipe() {
	clear(d.key[:])
	d.aead = nil
}
