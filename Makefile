# skm build and test entry points. "make test" is what CI runs.

GO      ?= go
BIN     ?= bin/skm
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/skm-p2p/skm/node.Version=$(VERSION)

.PHONY: all build test vet fuzz demo demo-lan interop-deps clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/skm

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# A CA and two nodes on 127.0.0.1 in temporary homes, chatting.
demo: build
	SKM=$(BIN) bash scripts/demo.sh

# The same chat on a LAN of network namespaces, the nodes finding each
# other with mDNS only. Needs root and iproute2.
demo-lan: build
	SKM=$(BIN) bash scripts/demo-lan.sh

# The js-libp2p peer that TestInteropJSLibp2p runs against a daemon:
# npm ci installs its locked packages whenever the lockfile is newer.
interop-deps: interop/js/node_modules/.package-lock.json

interop/js/node_modules/.package-lock.json: interop/js/package-lock.json
	npm ci --prefix interop/js --no-audit --no-fund

# The end-to-end tests in cmd/skm build the binary themselves and run
# real skm processes on loopback; they need openssl on PATH.
test: vet interop-deps
	$(GO) test -race -count=1 -timeout 15m ./...

# A short run of every fuzz target, beyond the seed corpus that
# "make test" already replays.
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin
