package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger forwards badger's messages to slog. badger reports routine
// work (compactions, replays) at Info, so that level goes to Debug.
type badgerLogger struct {
	log *slog.Logger
}

func newBadgerLogger(l *slog.Logger) badgerLogger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return badgerLogger{log: l.With("component", "badger")}
}

func (b badgerLogger) emit(level slog.Level, format string, args []any) {
	if !b.log.Enabled(context.Background(), level) {
		return
	}
	b.log.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.emit(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.emit(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.emit(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.emit(slog.LevelDebug, f, a) }
