package localapi

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenRejectsOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(filepath.Join(dir, SocketName))
	if err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("Listen in a 0755 directory: err = %v, want a chmod hint", err)
	}
}

func TestSocketModeAndRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SocketName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %04o, want 0600", perm)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		if err := ReadJSON(r, &in); err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return
		}
		WriteJSON(w, http.StatusOK, in)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, mux, nil) }()

	c := NewClient(path)
	var out map[string]string
	if err := c.Call(ctx, http.MethodPost, "/echo", map[string]string{"a": "b"}, &out); err != nil || out["a"] != "b" {
		t.Fatalf("echo: %v %v", out, err)
	}
	err = c.Call(ctx, http.MethodPost, "/echo", map[string]any{"a": strings.Repeat("x", MaxRequestSize)}, &out)
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized request: err = %v, want a size error", err)
	}
	err = c.Call(ctx, http.MethodPost, "/echo", []int{1}, &out)
	if err == nil || !strings.Contains(err.Error(), "invalid request body") {
		t.Errorf("malformed request: err = %v, want an invalid body error", err)
	}
	if !Running(path) {
		t.Error("Running reports no server")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := NewClient(path).Call(context.Background(), http.MethodGet, "/x", nil, nil); err == nil {
		t.Error("call after shutdown succeeded")
	}
}
