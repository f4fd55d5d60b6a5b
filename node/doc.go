// Package node is an skm user's node: its identity and keys, its libp2p
// host, and enrollment with a CA.
//
// A node's store holds, under the record keys defined in identity.go:
// the libp2p identity key (which fixes the peer ID), one Ed25519 signing
// key per key version, the user name, the CA certificate that the node
// trusts, and the certificate of each key version.
package node
