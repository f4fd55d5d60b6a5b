package protocol

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// seal returns the wire form of one frame that s writes.
func seal(t testing.TB, s *Session, typ FrameType, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.WriteFrame(&b, typ, body); err != nil {
		t.Fatalf("WriteFrame: %v", err)
	}
	return b.Bytes()
}

// open reads one frame from wire with s.
func open(s *Session, wire []byte) (FrameType, []byte, error) {
	return s.ReadFrame(bytes.NewReader(wire))
}

// mustOpen reads one frame and checks its type and body.
func mustOpen(t testing.TB, s *Session, wire []byte, typ FrameType, body []byte) {
	t.Helper()
	gotType, gotBody, err := open(s, wire)
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	if gotType != typ || !bytes.Equal(gotBody, body) {
		t.Fatalf("ReadFrame: %v frame of %d bytes, want %v of %d", gotType, len(gotBody), typ, len(body))
	}
}

// testClock is a clock that tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestSessionRoundTrip(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	tests := []struct {
		name string
		typ  FrameType
		size int
	}{
		{"empty data frame", FrameData, 0},
		{"small ack frame", FrameAck, 10},
		{"one KiB data frame", FrameData, 1 << 10},
		{"maximum data frame", FrameData, MaxPlaintext},
		{"close frame", FrameClose, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := randomBytes(t, tt.size)
			mustOpen(t, rs, seal(t, is, tt.typ, body), tt.typ, body)
			mustOpen(t, is, seal(t, rs, tt.typ, body), tt.typ, body)
		})
	}
}

func TestSessionOverTCP(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close() })
	c2, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c2.Close() })

	icfg, rcfg := f.config(f.alice, f.bob), f.config(f.bob, f.alice)
	icfg.StepTimeout, rcfg.StepTimeout = shortStepTimeout, shortStepTimeout
	o := handshakeOver(c1, c2, initiator(icfg), responder(rcfg))
	if o.initiatorErr != nil || o.responderErr != nil {
		t.Fatalf("handshake: initiator: %v; responder: %v", o.initiatorErr, o.responderErr)
	}
	// The handshake clears its deadlines, so the stream outlives them.
	time.Sleep(2 * shortStepTimeout)

	const frames = 100
	exchange := func(s *Session, c net.Conn, errs chan<- error) {
		go func() {
			for i := range frames {
				if err := s.WriteFrame(c, FrameData, fmt.Appendf(nil, "frame %d", i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
		for i := range frames {
			_, body, err := s.ReadFrame(c)
			if err != nil {
				errs <- err
				return
			}
			if want := fmt.Sprintf("frame %d", i); string(body) != want {
				errs <- fmt.Errorf("read %q, want %q", body, want)
				return
			}
		}
		errs <- nil
	}
	errs := make(chan error, 4)
	go exchange(o.initiator, c1, errs)
	go exchange(o.responder, c2, errs)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestSessionRejectsReplay(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	first := seal(t, is, FrameData, []byte("pay 10"))
	second := seal(t, is, FrameData, []byte("pay 20"))
	mustOpen(t, rs, first, FrameData, []byte("pay 10"))
	mustOpen(t, rs, second, FrameData, []byte("pay 20"))
	for _, wire := range [][]byte{first, second} {
		if _, _, err := open(rs, wire); !errors.Is(err, ErrReplay) {
			t.Errorf("replayed frame: error %v, want %v", err, ErrReplay)
		}
	}
}

func TestSessionRejectsTampering(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	// Offsets in the wire form: the 4-byte length, then the header.
	const (
		versionAt  = 4
		typeAt     = 5
		flagsAt    = 6
		reservedAt = 7
		epochAt    = 11
		seqAt      = 19
		bodyAt     = 20
	)
	flip := func(at int) func([]byte) []byte {
		return func(w []byte) []byte {
			w[at] ^= 1
			return w
		}
	}
	tests := []struct {
		name   string
		tamper func(wire []byte) []byte
		want   error
	}{
		{"ciphertext bit flipped", flip(bodyAt), ErrDecrypt},
		{"tag bit flipped", func(w []byte) []byte { w[len(w)-1] ^= 1; return w }, ErrDecrypt},
		{"type changed", func(w []byte) []byte { w[typeAt] = byte(FrameAck); return w }, ErrDecrypt},
		{"sequence number changed", flip(seqAt), ErrDecrypt},
		{"epoch moved to next", flip(epochAt), ErrDecrypt},
		{"version changed", flip(versionAt), ErrMalformedFrame},
		{"flag set", flip(flagsAt), ErrMalformedFrame},
		{"reserved byte set", flip(reservedAt), ErrMalformedFrame},
		{"type unknown", func(w []byte) []byte { w[typeAt] = 9; return w }, ErrMalformedFrame},
		{"type confirm", func(w []byte) []byte { w[typeAt] = byte(FrameConfirm); return w }, ErrMalformedFrame},
		{"tag cut short", func(w []byte) []byte {
			w = w[:len(w)-1]
			binary.BigEndian.PutUint32(w, uint32(len(w)-4))
			return w
		}, ErrDecrypt},
		{"body cut to header", func(w []byte) []byte {
			w = w[:bodyAt+sessionTagSize-1]
			binary.BigEndian.PutUint32(w, uint32(len(w)-4))
			return w
		}, ErrMalformedFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte("transfer 10 to alice")
			wire := seal(t, is, FrameData, body)
			if _, _, err := open(rs, tt.tamper(bytes.Clone(wire))); !errors.Is(err, tt.want) {
				t.Errorf("tampered frame: error %v, want %v", err, tt.want)
			}
			if rs.recv.epoch != 0 {
				t.Errorf("receiver moved to epoch %d", rs.recv.epoch)
			}
			mustOpen(t, rs, wire, FrameData, body)
		})
	}
	t.Run("session ID changed", func(t *testing.T) {
		body := []byte("transfer 10 to alice")
		wire := seal(t, is, FrameData, body)
		rs.id[0] ^= 1
		_, _, err := open(rs, wire)
		rs.id[0] ^= 1
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("frame of another session ID: error %v, want %v", err, ErrDecrypt)
		}
		mustOpen(t, rs, wire, FrameData, body)
	})
}

func TestSessionReplayWindow(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	// wires[n] is the frame with sequence number n.
	wires := make([][]byte, 1101)
	for n := 1; n < len(wires); n++ {
		wires[n] = seal(t, is, FrameData, []byte{byte(n)})
	}
	steps := []struct {
		seq  int
		want error
	}{
		{3, nil},
		{1, nil}, // late but within the window
		{3, ErrReplay},
		{1100, nil},
		{76, ErrOutOfWindow}, // 1100 - 76 = 1024, one below the window
		{77, nil},            // the oldest number the window covers
		{77, ErrReplay},
		{2, ErrOutOfWindow},
		{1099, nil},
		{1100, ErrReplay},
	}
	for _, step := range steps {
		_, _, err := open(rs, wires[step.seq])
		if !errors.Is(err, step.want) {
			t.Errorf("frame %d: error %v, want %v", step.seq, err, step.want)
		}
	}

	t.Run("too far ahead", func(t *testing.T) {
		is.send.seq += MaxSeqAhead
		wire := seal(t, is, FrameData, nil)
		if _, _, err := open(rs, wire); !errors.Is(err, ErrOutOfWindow) {
			t.Errorf("frame %d ahead: error %v, want %v", MaxSeqAhead+1, err, ErrOutOfWindow)
		}
		is.send.seq -= 2
		mustOpen(t, rs, seal(t, is, FrameData, nil), FrameData, nil)
	})
}

func TestReplayWindow(t *testing.T) {
	tests := []struct {
		name   string
		accept []uint64
		seq    uint64
		want   error
	}{
		{"first frame", nil, 0, nil},
		{"zero twice", []uint64{0}, 0, ErrReplay},
		{"next in order", []uint64{0, 1, 2}, 3, nil},
		{"gap filled later", []uint64{0, 5}, 3, nil},
		{"duplicate after gap", []uint64{0, 5, 3}, 3, ErrReplay},
		{"oldest in window", []uint64{2000}, 2000 - ReplayWindowSize + 1, nil},
		{"just below window", []uint64{2000}, 2000 - ReplayWindowSize, ErrOutOfWindow},
		{"maximum jump", []uint64{10}, 10 + MaxSeqAhead, nil},
		{"jump too far", []uint64{10}, 10 + MaxSeqAhead + 1, ErrOutOfWindow},
		{"stale bit cleared by slide", []uint64{5, 5 + ReplayWindowSize}, 5 + 2*ReplayWindowSize, nil},
		{"slide clears skipped numbers", []uint64{5, 5 + ReplayWindowSize + 10}, 5 + ReplayWindowSize, nil},
		{"long slide clears everything", []uint64{1, 2, 3, 5000}, 5000 - 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w replayWindow
			for _, seq := range tt.accept {
				if err := w.check(seq); err != nil {
					t.Fatalf("check(%d): %v", seq, err)
				}
				w.accept(seq)
			}
			if err := w.check(tt.seq); !errors.Is(err, tt.want) {
				t.Errorf("check(%d): error %v, want %v", tt.seq, err, tt.want)
			}
		})
	}
}

func TestSessionSequenceNumbers(t *testing.T) {
	is, _ := newSessionPair(t, nil)
	for want := uint64(1); want <= 20; want++ {
		wire := seal(t, is, FrameData, nil)
		if got := binary.BigEndian.Uint64(wire[12:20]); got != want {
			t.Fatalf("frame %d has sequence number %d", want, got)
		}
	}

	t.Run("rejected body uses none", func(t *testing.T) {
		next := is.send.seq
		if err := is.WriteFrame(io.Discard, FrameData, make([]byte, MaxPlaintext+1)); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("WriteFrame: error %v, want %v", err, ErrFrameTooLarge)
		}
		if is.send.seq != next {
			t.Errorf("sequence number moved from %d to %d", next, is.send.seq)
		}
	})
	t.Run("exhausted numbers not reused", func(t *testing.T) {
		is.send.seq = math.MaxUint64
		if err := is.WriteFrame(io.Discard, FrameData, nil); err == nil {
			t.Fatal("WriteFrame with exhausted sequence numbers succeeded")
		}
		if is.send.seq != math.MaxUint64 {
			t.Errorf("sequence number wrapped to %d", is.send.seq)
		}
	})
	t.Run("failed write is final", func(t *testing.T) {
		_, rs2 := newSessionPair(t, nil)
		errBroken := errors.New("broken stream")
		if err := rs2.WriteFrame(failingWriter{errBroken}, FrameData, nil); !errors.Is(err, errBroken) {
			t.Fatalf("WriteFrame: error %v, want %v", err, errBroken)
		}
		if err := rs2.WriteFrame(io.Discard, FrameData, nil); !errors.Is(err, errBroken) {
			t.Errorf("WriteFrame after a failed write: error %v, want %v", err, errBroken)
		}
	})
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestSessionConcurrentWriters(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	c1, c2 := pipe(t)
	const writers, perWriter = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := is.WriteFrame(c1, FrameData, []byte{byte(w), byte(i)}); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	next := make([]int, writers)
	for range writers * perWriter {
		_, body, err := rs.ReadFrame(c2)
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		w, i := int(body[0]), int(body[1])
		if i != next[w] {
			t.Fatalf("writer %d: frame %d arrived, want %d", w, i, next[w])
		}
		next[w]++
	}
	wg.Wait()
}

func TestSessionRekeyByCount(t *testing.T) {
	is, rs := newSessionPair(t, func(i, r *HandshakeConfig) {
		i.RekeyAfterMessages = 3
		r.RekeyAfterMessages = 3
	})
	firstKey := is.send.key
	const frames = 50
	for n := 1; n <= frames; n++ {
		body := fmt.Appendf(nil, "message %d", n)
		mustOpen(t, rs, seal(t, is, FrameData, body), FrameData, body)
		mustOpen(t, is, seal(t, rs, FrameData, body), FrameData, body)
	}
	// Frame k, counting the confirm frame as 0, is sealed in epoch k/3.
	const wantEpoch = frames / 3
	for _, s := range []*Session{is, rs} {
		if s.send.epoch != wantEpoch || s.recv.epoch != wantEpoch {
			t.Errorf("epochs: send %d, receive %d; want %d", s.send.epoch, s.recv.epoch, wantEpoch)
		}
	}
	if is.send.key != rs.recv.key || rs.send.key != is.recv.key {
		t.Error("the two sides ratcheted to different keys")
	}
	if is.send.key == firstKey {
		t.Error("the sending key did not change")
	}
}

func TestSessionRekeyByTime(t *testing.T) {
	clock := &testClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	const after = time.Minute
	is, rs := newSessionPair(t, func(i, r *HandshakeConfig) {
		i.Now, i.RekeyAfterTime = clock.Now, after
	})
	body := []byte("hello")
	mustOpen(t, rs, seal(t, is, FrameData, body), FrameData, body)
	clock.Advance(after - time.Second)
	mustOpen(t, rs, seal(t, is, FrameData, body), FrameData, body)
	if is.send.epoch != 0 {
		t.Fatalf("rekeyed before the time threshold: epoch %d", is.send.epoch)
	}
	for want := uint32(1); want <= 20; want++ {
		clock.Advance(after)
		mustOpen(t, rs, seal(t, is, FrameData, body), FrameData, body)
		mustOpen(t, rs, seal(t, is, FrameData, body), FrameData, body)
		if is.send.epoch != want || rs.recv.epoch != want {
			t.Fatalf("epochs: send %d, receive %d; want %d", is.send.epoch, rs.recv.epoch, want)
		}
	}
}

func TestSessionRejectsEpochJump(t *testing.T) {
	is, rs := newSessionPair(t, func(i, r *HandshakeConfig) { i.RekeyAfterMessages = 2 })
	// Two frames to a key, the confirm frame being the first of epoch 0:
	// data frame n is sealed in epoch n/2.
	wires := make([][]byte, 7)
	for n := 1; n < len(wires); n++ {
		wires[n] = seal(t, is, FrameData, []byte{byte(n)})
	}
	steps := []struct {
		frame int
		want  error
	}{
		{4, ErrKeyEpoch}, // epoch 2, receiver in 0
		{2, nil},         // epoch 1
		{1, ErrKeyEpoch}, // epoch 0 is behind
		{6, ErrKeyEpoch}, // epoch 3, receiver in 1
		{4, nil},
		{3, ErrKeyEpoch},
		{6, nil},
	}
	for _, step := range steps {
		if _, _, err := open(rs, wires[step.frame]); !errors.Is(err, step.want) {
			t.Errorf("frame %d: error %v, want %v", step.frame, err, step.want)
		}
	}
	if rs.recv.epoch != 3 {
		t.Errorf("receiver in epoch %d, want 3", rs.recv.epoch)
	}
}

func TestSessionMaxPlaintext(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	if err := is.WriteFrame(io.Discard, FrameData, make([]byte, MaxPlaintext+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("WriteFrame of %d bytes: error %v, want %v", MaxPlaintext+1, err, ErrFrameTooLarge)
	}
	wire := seal(t, is, FrameData, make([]byte, MaxPlaintext))
	if len(wire) != 4+maxSessionFrame {
		t.Errorf("maximum frame is %d bytes, want %d", len(wire), 4+maxSessionFrame)
	}
	mustOpen(t, rs, wire, FrameData, make([]byte, MaxPlaintext))

	oversized := binary.BigEndian.AppendUint32(nil, maxSessionFrame+1)
	if _, _, err := open(rs, oversized); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("frame of %d bytes: error %v, want %v", maxSessionFrame+1, err, ErrFrameTooLarge)
	}
	// The stream position is lost, so the session reads no further.
	if _, _, err := open(rs, seal(t, is, FrameData, nil)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("ReadFrame after an oversized frame: error %v, want %v", err, ErrFrameTooLarge)
	}
}

// stallingReader returns the first n bytes of data, then fails one read
// with err, then returns the rest of data.
type stallingReader struct {
	data    []byte
	n       int
	err     error
	stalled bool
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if !r.stalled && r.n == 0 {
		r.stalled = true
		return 0, r.err
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if !r.stalled && len(p) > r.n {
		p = p[:r.n]
	}
	k := copy(p, r.data)
	r.data = r.data[k:]
	if !r.stalled {
		r.n -= k
	}
	return k, nil
}

func TestSessionReadAfterIOError(t *testing.T) {
	tests := []struct {
		name      string
		consumed  int
		wantFinal bool
	}{
		{"timeout between frames", 0, false},
		{"timeout inside length", 2, true},
		{"timeout inside header", 10, true},
		{"timeout inside body", 25, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is, rs := newSessionPair(t, nil)
			body := []byte("after the stall")
			wire := seal(t, is, FrameData, body)
			r := &stallingReader{data: wire, n: tt.consumed, err: os.ErrDeadlineExceeded}
			if _, _, err := rs.ReadFrame(r); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("first ReadFrame: error %v, want %v", err, os.ErrDeadlineExceeded)
			}
			if !tt.wantFinal {
				gotType, gotBody, err := rs.ReadFrame(r)
				if err != nil || gotType != FrameData || !bytes.Equal(gotBody, body) {
					t.Errorf("second ReadFrame: %v frame %q, error %v; want the data frame", gotType, gotBody, err)
				}
				return
			}
			if _, _, err := open(rs, seal(t, is, FrameData, body)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("ReadFrame after a failed read inside a frame: error %v, want %v", err, os.ErrDeadlineExceeded)
			}
		})
	}
}

func TestSessionFrameTypes(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	for _, typ := range []FrameType{0, FrameConfirm, 5, 255} {
		if err := is.WriteFrame(io.Discard, typ, nil); err == nil {
			t.Errorf("WriteFrame of type %v succeeded", typ)
		}
	}
	var b bytes.Buffer
	if err := is.writeFrame(&b, FrameConfirm, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rs.ReadFrame(&b); !errors.Is(err, ErrMalformedFrame) {
		t.Errorf("confirm frame after the handshake: error %v, want %v", err, ErrMalformedFrame)
	}
}

func TestSessionClose(t *testing.T) {
	is, rs := newSessionPair(t, nil)
	wire := seal(t, is, FrameData, nil)
	is.Close()
	rs.Close()
	var zero [32]byte
	if is.send.key != zero || is.recv.key != zero || rs.send.key != zero || rs.recv.key != zero {
		t.Error("Close left keys in memory")
	}
	if err := is.WriteFrame(io.Discard, FrameData, nil); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("WriteFrame after Close: error %v, want %v", err, ErrSessionClosed)
	}
	if _, _, err := open(rs, wire); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("ReadFrame after Close: error %v, want %v", err, ErrSessionClosed)
	}
}

// TestSessionWireFormat opens a frame with the standard library alone,
// following the frame format in docs/protocol.md.
func TestSessionWireFormat(t *testing.T) {
	is, _ := newSessionPair(t, nil)
	body := []byte("hello")
	wire := seal(t, is, FrameAck, body)

	if n := binary.BigEndian.Uint32(wire); int(n) != len(wire)-4 {
		t.Fatalf("length prefix %d, want %d", n, len(wire)-4)
	}
	header := wire[4:20]
	want := []byte{1, byte(FrameAck), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	if !bytes.Equal(header, want) {
		t.Fatalf("header %x, want %x", header, want)
	}
	block, err := aes.NewCipher(is.send.key[:])
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	id := is.ID()
	plain, err := gcm.Open(nil, nonce, wire[20:], append(id[:], header...))
	if err != nil {
		t.Fatalf("open with the documented nonce and associated data: %v", err)
	}
	if !bytes.Equal(plain, body) {
		t.Errorf("body %q, want %q", plain, body)
	}
}

// TestSessionKeyDerivation checks the key schedule against HKDF computed
// here from fixed inputs.
func TestSessionKeyDerivation(t *testing.T) {
	hash := bytes.Repeat([]byte{0xaa}, 32)
	i2r, r2i := [32]byte{1}, [32]byte{2}
	params := func(initiator bool) *sessionParams {
		return &sessionParams{
			initiator: initiator, hash: hash, i2r: i2r, r2i: r2i,
			now: time.Now, rekeyAfterMessages: 1, rekeyAfterTime: time.Hour,
		}
	}
	p := params(true)
	is, err := newSession(p)
	if err != nil {
		t.Fatal(err)
	}
	if p.i2r != ([32]byte{}) || p.r2i != ([32]byte{}) {
		t.Error("newSession left the split keys in memory")
	}
	rs, err := newSession(params(false))
	if err != nil {
		t.Fatal(err)
	}
	wantI2R, _ := hkdf.Key(sha256.New, i2r[:], hash, "skm v1 i2r", 32)
	wantR2I, _ := hkdf.Key(sha256.New, r2i[:], hash, "skm v1 r2i", 32)
	if !bytes.Equal(is.send.key[:], wantI2R) || !bytes.Equal(rs.recv.key[:], wantI2R) {
		t.Error("initiator-to-responder key differs from HKDF")
	}
	if !bytes.Equal(is.recv.key[:], wantR2I) || !bytes.Equal(rs.send.key[:], wantR2I) {
		t.Error("responder-to-initiator key differs from HKDF")
	}

	wantNext, _ := hkdf.Expand(sha256.New, wantI2R, "skm v1 rekey", 32)
	is.WriteFrame(io.Discard, FrameData, nil) // seq 0, epoch 0
	is.WriteFrame(io.Discard, FrameData, nil) // epoch 1
	if !bytes.Equal(is.send.key[:], wantNext) || is.send.epoch != 1 {
		t.Errorf("epoch %d key %x, want epoch 1 key %x", is.send.epoch, is.send.key, wantNext)
	}

	sum := sha256.Sum256(append([]byte("skm session fingerprint v1"), hash...))
	if got, want := is.Fingerprint(), hex.EncodeToString(sum[:8]); got != want {
		t.Errorf("fingerprint %s, want %s", got, want)
	}
}

func BenchmarkSeal1KiB(b *testing.B)  { benchmarkSeal(b, 1<<10) }
func BenchmarkSeal64KiB(b *testing.B) { benchmarkSeal(b, MaxPlaintext) }

func benchmarkSeal(b *testing.B, size int) {
	is, _ := newSessionPair(b, nil)
	body := make([]byte, size)
	b.SetBytes(int64(size))
	for b.Loop() {
		if err := is.WriteFrame(io.Discard, FrameData, body); err != nil {
			b.Fatal(err)
		}
	}
}
