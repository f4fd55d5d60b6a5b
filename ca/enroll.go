package ca

import (
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/skm-p2p/skm/protocol"
)

// enrollTimeout bounds one enrollment stream from open to close.
const enrollTimeout = 30 * time.Second

// HandleEnroll serves one enrollment stream. Register it on the CA's host
// for [protocol.EnrollID]. Every request ends in one log line.
func (a *Authority) HandleEnroll(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(enrollTimeout))
	remote := s.Conn().RemotePeer()
	log := a.cfg.Log.With("peer", remote.String())

	resp, user := a.enroll(s)
	if resp.Error != nil {
		log.Info("enrollment rejected", "user", user, "code", resp.Error.Code, "reason", resp.Error.Message)
	} else {
		log.Info("certificate issued", "user", user)
	}
	if err := protocol.WriteJSON(s, resp); err != nil {
		log.Debug("send enrollment response", "err", err)
		s.Reset()
		return
	}
	if resp.Error != nil {
		// The request may not have been read to its end. Reset so that a
		// peer still writing sees an error instead of blocking.
		s.CloseWrite()
		s.Reset()
	}
}

// enroll reads and judges one request. It returns the response to send
// and the user name the request claimed, if it got that far.
func (a *Authority) enroll(s network.Stream) (protocol.EnrollResponse, string) {
	frame, err := protocol.ReadFrame(s, protocol.MaxEnrollRequestSize)
	if err != nil {
		return rejection(protocol.CodeBadRequest, "read request: "+err.Error()), ""
	}
	req, csr, err := protocol.DecodeEnrollRequest(frame)
	if err != nil {
		return rejection(protocol.CodeBadRequest, err.Error()), ""
	}
	user := csr.Subject.CommonName
	cert, err := a.Issue(Request{
		Peer:       s.Conn().RemotePeer(),
		CSR:        csr,
		Token:      req.Token,
		Continuity: req.Continuity,
	})
	var rejected *protocol.Error
	if errors.As(err, &rejected) {
		return protocol.EnrollResponse{Error: rejected}, user
	}
	if err != nil {
		a.cfg.Log.Error("issue certificate", "user", user, "err", err)
		return rejection(protocol.CodeInternal, "the CA failed to issue the certificate; its log has the cause"), user
	}
	return protocol.EnrollResponse{Certificate: cert.Raw, CACertificate: a.cert.Raw}, user
}

func rejection(code protocol.Code, message string) protocol.EnrollResponse {
	return protocol.EnrollResponse{Error: &protocol.Error{Code: code, Message: message}}
}
