#!/usr/bin/env bash
# Runs the skm demo on a LAN made of network namespaces: a CA and two
# nodes, each in its own namespace, joined by a bridge. The nodes are
# given no peer address: they find each other with mDNS. mDNS runs only
# inside these namespaces, never on the machine's own interfaces.
# Everything the demo starts is stopped, and its namespaces and homes
# removed, on exit and on Ctrl-C. Needs root and iproute2.
set -euo pipefail

skm=${SKM:-bin/skm}
[ -x "$skm" ] || { echo "demo-lan: $skm not found: run make build" >&2; exit 1; }
skm=$(cd "$(dirname "$skm")" && pwd)/$(basename "$skm")
command -v ip >/dev/null || { echo "demo-lan: the ip command of iproute2 is missing" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
	echo "demo-lan: creating network namespaces needs root: run sudo SKM=$skm bash $0" >&2
	exit 1
fi

# Namespace names carry a random prefix and this shell's PID, so that
# runs never collide. Every interface name carries the prefix too.
prefix=skm$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
subnet=10.213.0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skm-demo-lan.XXXXXX")
namespaces=()
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export SKM_PASSPHRASE="demo passphrase, not for real use"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_line FILE PATTERN: wait up to 30 s for a line matching PATTERN.
wait_line() {
	for _ in $(seq 300); do
		if grep -q -- "$2" "$1" 2>/dev/null; then
			grep -m1 -- "$2" "$1"
			return 0
		fi
		sleep 0.1
	done
	echo "demo-lan: timed out waiting for '$2' in $1" >&2
	cat "$1" >&2
	return 1
}

# add_namespace ROLE: create the namespace for ROLE, with lo up.
add_namespace() {
	local ns=$prefix-$$-$1
	ip netns add "$ns"
	namespaces+=("$ns")
	ip -n "$ns" link set lo up
}

# add_host ROLE N: create a host namespace with address $subnet.N/24 on
# a veth whose other end is a port of the bridge.
add_host() {
	local ns=$prefix-$$-$1 dev=${prefix}h$2 port=${prefix}s$2
	add_namespace "$1"
	ip -n "$ns" link add "$dev" type veth peer name "$port" netns "$sw"
	ip -n "$ns" addr add "$subnet.$2/24" dev "$dev"
	ip -n "$ns" link set "$dev" up
	ip -n "$sw" link set "$port" master "$bridge"
	ip -n "$sw" link set "$port" up
	echo "host $1: namespace $ns, address $subnet.$2 on $dev"
}

# run_in ROLE ARGS...: run skm in ROLE's namespace.
run_in() {
	local ns=$prefix-$$-$1
	shift
	ip netns exec "$ns" "$skm" "$@"
}

# start ROLE NAME ARGS...: run a long-lived skm command in ROLE's
# namespace in the background. ip netns exec replaces itself with skm,
# so $! is skm's PID.
start() {
	local ns=$prefix-$$-$1 name=$2
	shift 2
	ip netns exec "$ns" "$skm" "$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
	pids+=($!)
}

step "Build a LAN: a bridge in a switch namespace, three hosts on $subnet.0/24"
sw=$prefix-$$-sw
bridge=${prefix}br
add_namespace sw
ip -n "$sw" link add "$bridge" type bridge
ip -n "$sw" link set "$bridge" up
add_host ca 1
add_host alice 2
add_host bob 3

step "Create a CA and serve it on the LAN, announced by mDNS"
run_in ca ca init --home "$tmp/ca" --name "Demo LAN CA"
start ca ca ca serve --home "$tmp/ca" --listen /ip4/0.0.0.0/tcp/7400 --mdns
ca_addr=$(wait_line "$tmp/ca.out" "/ip4/$subnet.1/")
echo "CA listens at $ca_addr"

for user in alice bob; do
	step "Enroll $user at the CA's LAN address"
	token=$(run_in ca ca token "$user" --home "$tmp/ca" 2>/dev/null)
	run_in "$user" init --user "$user" --home "$tmp/$user" --ca "$ca_addr" --token "$token"
done

step "Start both daemons with --mdns and no peer address"
start alice alice daemon --home "$tmp/alice" --listen /ip4/0.0.0.0/tcp/7401 --mdns
start bob bob daemon --home "$tmp/bob" --listen /ip4/0.0.0.0/tcp/7401 --mdns
wait_line "$tmp/bob.log" "peer found by mDNS"
line=$(wait_line "$tmp/bob.log" "session established")
session=$(sed -n 's/.* session=\([^ ]*\).*/\1/p' <<<"$line")
echo "bob found alice by mDNS; session fingerprint $session"

step "alice sends to bob"
run_in alice send bob "Hello Bob, Alice here, on the LAN." --home "$tmp/alice"

step "bob replies"
run_in bob send alice "Hi Alice! Found you without an address." --home "$tmp/bob"

step "bob's history: received and decrypted"
run_in bob history alice --home "$tmp/bob"

step "alice's history"
run_in alice history bob --home "$tmp/alice"

step "bob's contacts: alice's address came from mDNS"
run_in bob peers --home "$tmp/bob"

echo
echo "demo finished; stopping the CA and both daemons, removing the namespaces"
