// Package protocol defines what skm nodes and CAs send each other: the
// libp2p protocol IDs, the framing of messages on a stream, the
// enrollment request and response, and the fields skm puts in X.509
// certificates.
//
// # Framing
//
// Every control message is one frame: a 4-byte big-endian length followed
// by that many bytes of JSON. Each protocol sets its own maximum frame
// size, and [ReadFrame] checks the length against it before allocating.
// JSON decoding rejects unknown fields and trailing data, so a message
// either parses completely or not at all.
//
// # Certificates
//
// A user certificate carries the user name as the subject common name and
// two URI subject alternative names:
//
//	skm:peer:<libp2p peer ID>
//	skm:key-version:<decimal key version>
//
// A CA certificate carries the skm:peer URI of the CA's libp2p host, so a
// node that dials the CA by peer ID can check that the certificate it
// receives belongs to the host it reached.
package protocol
