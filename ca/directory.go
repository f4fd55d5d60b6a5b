package ca

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/skm-p2p/skm/protocol"
	"github.com/skm-p2p/skm/store"
)

// HandleDirectory serves one directory stream: it records the addresses
// a certified peer announces and returns a user's current certificate
// and addresses. Register it on the CA's host for [protocol.DirectoryID].
func (a *Authority) HandleDirectory(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(enrollTimeout))
	remote := s.Conn().RemotePeer().String()
	resp := a.directory(s, remote)
	if resp.Error != nil {
		a.cfg.Log.Debug("directory request rejected", "peer", remote, "code", resp.Error.Code, "reason", resp.Error.Message)
	}
	if err := protocol.WriteJSON(s, resp); err != nil {
		s.Reset()
	}
}

func (a *Authority) directory(s network.Stream, remote string) protocol.DirectoryResponse {
	fail := func(code protocol.Code, format string, args ...any) protocol.DirectoryResponse {
		return protocol.DirectoryResponse{Error: protocol.Errorf(code, format, args...)}
	}
	frame, err := protocol.ReadFrame(s, protocol.MaxDirectoryRequestSize)
	if err != nil {
		return fail(protocol.CodeBadRequest, "read request: %v", err)
	}
	req, err := protocol.DecodeDirectoryRequest(frame)
	if err != nil {
		return fail(protocol.CodeBadRequest, "%v", err)
	}
	owner, err := a.st.Get(store.Peers, remote)
	if errors.Is(err, store.ErrNotFound) {
		return fail(protocol.CodePeerMismatch, "peer %s has no certificate from this CA", remote)
	}
	if err != nil {
		return fail(protocol.CodeInternal, "read peer record")
	}
	if len(req.Announce) > 0 {
		if err := a.saveAddrs(string(owner), req.Announce); err != nil {
			return fail(protocol.CodeBadRequest, "%v", err)
		}
	}
	if req.Lookup == "" {
		return protocol.DirectoryResponse{}
	}
	return a.lookup(req.Lookup)
}

func (a *Authority) saveAddrs(user string, addrs []string) error {
	for _, s := range addrs {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("invalid announced address %q: %v", s, err)
		}
	}
	raw, err := json.Marshal(addrs)
	if err != nil {
		return err
	}
	return a.st.Put(store.Addrs, user, raw)
}

func (a *Authority) lookup(user string) protocol.DirectoryResponse {
	var resp protocol.DirectoryResponse
	err := a.st.View(func(tx *store.Tx) error {
		raw, err := tx.Get(store.Users, user)
		if err != nil {
			return err
		}
		cert, err := loadCurrent(tx, raw)
		if err != nil {
			return err
		}
		resp.Certificate = cert.Raw
		addrs, err := tx.Get(store.Addrs, user)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(addrs, &resp.Addrs)
	})
	if errors.Is(err, store.ErrNotFound) {
		return protocol.DirectoryResponse{Error: protocol.Errorf(protocol.CodeNotFound, "the CA has no certificate for user %q", user)}
	}
	if err != nil {
		a.cfg.Log.Error("directory lookup", "user", user, "err", err)
		return protocol.DirectoryResponse{Error: protocol.Errorf(protocol.CodeInternal, "the CA failed to look up the user")}
	}
	return resp
}
