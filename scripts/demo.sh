#!/usr/bin/env bash
# Runs the skm demo on loopback: a CA and two nodes in temporary homes,
# enrolled, chatting end to end encrypted. Everything it starts is
# stopped, and its homes removed, on exit and on Ctrl-C.
set -euo pipefail

skm=${SKM:-bin/skm}
[ -x "$skm" ] || { echo "demo: $skm not found: run make build" >&2; exit 1; }
skm=$(cd "$(dirname "$skm")" && pwd)/$(basename "$skm")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/skm-demo.XXXXXX")
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export SKM_PASSPHRASE="demo passphrase, not for real use"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_line FILE PATTERN: wait up to 20 s for a line matching PATTERN.
wait_line() {
	for _ in $(seq 200); do
		if grep -q -- "$2" "$1" 2>/dev/null; then
			grep -m1 -- "$2" "$1"
			return 0
		fi
		sleep 0.1
	done
	echo "demo: timed out waiting for '$2' in $1" >&2
	cat "$1" >&2
	return 1
}

# start NAME ARGS...: run a long-lived skm command in the background.
start() {
	local name=$1
	shift
	"$skm" "$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
	pids+=($!)
}

step "Create a CA and serve it on 127.0.0.1"
"$skm" ca init --home "$tmp/ca" --name "Demo CA"
start ca ca serve --home "$tmp/ca" --listen /ip4/127.0.0.1/tcp/0
ca_addr=$(wait_line "$tmp/ca.out" /p2p/)
echo "CA listens at $ca_addr"

for user in alice bob; do
	step "Enroll $user"
	token=$("$skm" ca token "$user" --home "$tmp/ca" 2>/dev/null)
	"$skm" init --user "$user" --home "$tmp/$user" --ca "$ca_addr" --token "$token"
done

step "Start both daemons; bob dials alice"
start alice daemon --home "$tmp/alice" --listen /ip4/127.0.0.1/tcp/0
alice_addr=$(wait_line "$tmp/alice.out" /p2p/)
start bob daemon --home "$tmp/bob" --listen /ip4/127.0.0.1/tcp/0 --peer "$alice_addr"
wait_line "$tmp/bob.out" /p2p/ >/dev/null
line=$(wait_line "$tmp/bob.log" "session established")
session=$(sed -n 's/.* session=\([^ ]*\).*/\1/p' <<<"$line")
echo "shared key established with alice: session fingerprint $session (the keys never leave the nodes)"

step "alice sends to bob"
"$skm" send bob "Hello Bob, this is Alice." --home "$tmp/alice"
echo "message sent encrypted (AES-256-GCM)"

step "bob replies"
"$skm" send alice "Hi Alice! Bob here." --home "$tmp/bob"

step "bob's history: received and decrypted"
"$skm" history alice --home "$tmp/bob"

step "alice's history"
"$skm" history bob --home "$tmp/alice"

step "bob's contacts"
"$skm" peers --home "$tmp/bob"

echo
echo "demo finished; stopping the CA and both daemons"
