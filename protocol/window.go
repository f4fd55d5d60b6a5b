package protocol

import "errors"

// Replay window bounds. The window is a sliding bitmap over sequence
// numbers, as in WireGuard. It records which of the last
// [ReplayWindowSize] sequence numbers up to the highest one accepted have
// been seen.
const (
	// ReplayWindowSize is the number of sequence numbers, counting back
	// from the highest one accepted, that the window tracks. A frame with
	// an older sequence number is rejected.
	ReplayWindowSize = 1024
	// MaxSeqAhead is how far beyond the highest accepted sequence number
	// a frame's sequence number may be. A larger jump is rejected, so a
	// frame cannot move the window arbitrarily far.
	MaxSeqAhead = 1 << 16
)

// Errors that the replay window returns.
var (
	// ErrReplay is returned for a frame whose sequence number was
	// already accepted.
	ErrReplay = errors.New("replayed frame")
	// ErrOutOfWindow is returned for a frame whose sequence number is
	// below the replay window, or more than [MaxSeqAhead] above the
	// highest sequence number accepted.
	ErrOutOfWindow = errors.New("frame sequence number outside the replay window")
)

const windowWords = ReplayWindowSize / 64

// replayWindow tracks the sequence numbers received in one direction.
// Sequence number n maps to bit n mod [ReplayWindowSize], which is unique
// among the numbers the window covers. The zero value has accepted
// nothing, and its highest sequence number is 0.
type replayWindow struct {
	highest uint64
	seen    [windowWords]uint64
}

// check returns an error unless seq may be accepted. It changes nothing,
// so a frame that later fails authentication leaves the window as it was.
func (w *replayWindow) check(seq uint64) error {
	switch {
	case seq > w.highest:
		if seq-w.highest > MaxSeqAhead {
			return ErrOutOfWindow
		}
		return nil
	case w.highest-seq >= ReplayWindowSize:
		return ErrOutOfWindow
	case w.has(seq):
		return ErrReplay
	}
	return nil
}

// accept records seq, which [replayWindow.check] has allowed, and slides
// the window forward if seq is the new highest.
func (w *replayWindow) accept(seq uint64) {
	if seq > w.highest {
		if seq-w.highest >= ReplayWindowSize {
			w.seen = [windowWords]uint64{}
		} else {
			for n := w.highest + 1; n < seq; n++ {
				w.clear(n)
			}
		}
		w.highest = seq
	}
	w.set(seq)
}

func (w *replayWindow) has(seq uint64) bool {
	i := seq % ReplayWindowSize
	return w.seen[i/64]&(1<<(i%64)) != 0
}

func (w *replayWindow) set(seq uint64) {
	i := seq % ReplayWindowSize
	w.seen[i/64] |= 1 << (i % 64)
}

func (w *replayWindow) clear(seq uint64) {
	i := seq % ReplayWindowSize
	w.seen[i/64] &^= 1 << (i % 64)
}
