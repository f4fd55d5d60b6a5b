// A js-libp2p peer that checks skm speaks standard libp2p. It dials one
// skm daemon over TCP with Noise and yamux, runs identify and ping,
// subscribes to a GossipSub topic and waits for one message.
//
// Usage: node peer.mjs MULTIADDR TOPIC [TIMEOUT_SECONDS]
//
// MULTIADDR must be a loopback address that ends in /p2p/<peer ID>. The
// peer dials that address and nothing else, because a connection gater
// rejects every other address and peer. It listens on no address.
//
// Each result is one JSON object per line on stdout, with an "event"
// field:
//
//	identify  agentVersion, protocolVersion and protocols of the daemon
//	ping      rttMs, the round-trip time in milliseconds
//	mesh      the daemon joined this peer's mesh for the topic
//	message   topic, from, data (hex) and sha256 (hex) of one message
//
// The exit status is 0 after a message, 1 on an error and 2 when the
// timeout (default 30 s) passes first. Errors go to stderr.

import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const P2P_CODE = 421 // multicodec of the /p2p/ component
const MESH_POLL_MS = 100

function emit (event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

function fail (message) {
  process.stderr.write(`peer.mjs: ${message}\n`)
  process.exit(1)
}

function isLoopback (component) {
  return (component?.name === 'ip4' && component.value.startsWith('127.')) ||
    (component?.name === 'ip6' && component.value === '::1')
}

function parseArgs (argv) {
  if (argv.length < 2 || argv.length > 3) {
    fail('usage: node peer.mjs MULTIADDR TOPIC [TIMEOUT_SECONDS]')
  }
  let target
  try {
    target = multiaddr(argv[0])
  } catch (err) {
    fail(`invalid multiaddr ${JSON.stringify(argv[0])}: ${err.message}`)
  }
  const components = target.getComponents()
  if (!isLoopback(components[0])) {
    fail(`address ${JSON.stringify(argv[0])} is not on loopback (127.0.0.0/8 or ::1)`)
  }
  const peerId = components.findLast((c) => c.code === P2P_CODE)?.value
  if (peerId == null) {
    fail(`address ${JSON.stringify(argv[0])} has no /p2p/<peer ID> part`)
  }
  const timeoutSeconds = argv.length === 3 ? Number(argv[2]) : 30
  if (!(timeoutSeconds > 0)) {
    fail(`invalid timeout ${JSON.stringify(argv[2])}: want a positive number of seconds`)
  }
  return { target, peerId, topic: argv[1], timeoutSeconds }
}

// startNode starts a libp2p node that may dial only the transport
// address of target and only the peer peerId.
async function startNode (target, peerId) {
  const allowed = target.decapsulateCode(P2P_CODE).toString()
  return createLibp2p({
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: {
      denyDialMultiaddr: (ma) => ma.decapsulateCode(P2P_CODE).toString() !== allowed,
      denyDialPeer: (p) => p.toString() !== peerId,
      denyInboundConnection: () => true
    },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub()
    }
  })
}

// waitForMesh resolves once peerId is in the local mesh for topic, after
// a GRAFT from either side. A PRUNE from the remote would remove it.
function waitForMesh (pubsub, topic, peerId) {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (pubsub.getMeshPeers(topic).includes(peerId)) {
        clearInterval(timer)
        resolve()
      }
    }, MESH_POLL_MS)
  })
}

// waitForMessage resolves with the first message on topic.
function waitForMessage (pubsub, topic) {
  return new Promise((resolve) => {
    pubsub.addEventListener('message', (evt) => {
      if (evt.detail.topic === topic) {
        resolve(evt.detail)
      }
    })
  })
}

// waitForIdentify resolves with the result of the identify exchange that
// libp2p runs on each new connection, once it has run with peerId.
function waitForIdentify (node, peerId) {
  return new Promise((resolve) => {
    node.addEventListener('peer:identify', (evt) => {
      if (evt.detail.peerId.toString() === peerId) {
        resolve(evt.detail)
      }
    })
  })
}

async function run ({ target, peerId, topic }) {
  const node = await startNode(target, peerId)
  const pubsub = node.services.pubsub
  const identified = waitForIdentify(node, peerId)
  const message = waitForMessage(pubsub, topic)
  pubsub.subscribe(topic)

  await node.dial(target)
  const id = await identified
  emit('identify', {
    peer: id.peerId.toString(),
    agentVersion: id.agentVersion,
    protocolVersion: id.protocolVersion,
    protocols: id.protocols
  })

  const rtt = await node.services.ping.ping(target)
  emit('ping', { rttMs: rtt })

  await waitForMesh(pubsub, topic, peerId)
  emit('mesh', { topic, peer: peerId })

  const m = await message
  emit('message', {
    topic: m.topic,
    from: m.from?.toString(),
    data: Buffer.from(m.data).toString('hex'),
    sha256: createHash('sha256').update(m.data).digest('hex')
  })
  await node.stop()
}

const args = parseArgs(process.argv.slice(2))
setTimeout(() => {
  process.stderr.write(`peer.mjs: no message on ${args.topic} within ${args.timeoutSeconds}s\n`)
  process.exit(2)
}, args.timeoutSeconds * 1000)
run(args).then(
  () => process.exit(0),
  (err) => fail(err.stack ?? String(err))
)
