package ca

import (
	"errors"
	"io"
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

	resp, user, readAll := a.enroll(s)
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
	if !readAll {
		// The request was not read to its end. Reset so that a peer still
		// writing gets an error instead of blocking. Over QUIC a reset can
		// discard the response, so only this case resets. After a whole
		// request, the deferred Close delivers the response on every
		// transport.
		s.CloseWrite()
		s.Reset()
	}
}

// enroll reads and judges one request. It returns the response to send,
// the user name the request claimed, if it got that far, and whether the
// request was read to its end: a whole frame, or the end of the stream.
func (a *Authority) enroll(s network.Stream) (resp protocol.EnrollResponse, user string, readAll bool) {
	frame, err := protocol.ReadFrame(s, protocol.MaxEnrollRequestSize)
	if err != nil {
		ended := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		return rejection(protocol.CodeBadRequest, "read request: "+err.Error()), "", ended
	}
	req, csr, err := protocol.DecodeEnrollRequest(frame)
	if err != nil {
		return rejection(protocol.CodeBadRequest, err.Error()), "", true
	}
	user = csr.Subject.CommonName
	cert, err := a.Issue(Request{
		Peer:       s.Conn().RemotePeer(),
		CSR:        csr,
		Token:      req.Token,
		Continuity: req.Continuity,
	})
	var rejected *protocol.Error
	if errors.As(err, &rejected) {
		return protocol.EnrollResponse{Error: rejected}, user, true
	}
	if err != nil {
		a.cfg.Log.Error("issue certificate", "user", user, "err", err)
		return rejection(protocol.CodeInternal, "the CA failed to issue the certificate; its log has the cause"), user, true
	}
	return protocol.EnrollResponse{Certificate: cert.Raw, CACertificate: a.cert.Raw}, user, true
}

func rejection(code protocol.Code, message string) protocol.EnrollResponse {
	return protocol.EnrollResponse{Error: protocol.Errorf(code, "%s", message)}
}
