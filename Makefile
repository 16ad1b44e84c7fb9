# wnv: build, demo and test. Targets that touch namespaces (demo, and the lab
# tests inside test) need root: sudo make demo, sudo make test.

# sudo resets PATH, so fall back to the standard Go install location.
GO    ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT ?= $(dir $(GO))gofmt
BIN   := bin
# Counted in executions, not seconds: a -fuzztime duration races the fuzz
# coordinator's own deadline in Go 1.26 (go.dev/issue/75804) and fails spuriously.
FUZZTIME ?= 20000x

.PHONY: all build demo test deps guest generate gencheck clean fmt vet gotest fuzz ctest screenshot

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...
	@if [ -f capi/Makefile ]; then $(MAKE) -C capi; fi

demo: deps build
	./$(BIN)/wnvctl lab demo

test: deps build fmt vet gencheck gotest fuzz ctest

fmt:
	@out=$$($(GOFMT) -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The namespace tests run twice: with the kernel fast path (the default) and
# with every frame through wnvd's switch, so each path checks the other.
gotest:
	$(GO) test -count=1 -timeout 20m ./...
	WNV_FAST_PATH=off $(GO) test -count=1 -timeout 20m ./host/ ./hostagent/ ./lab/

# Every fuzz target runs briefly; its committed seeds run in gotest already.
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do \
		for f in $$($(GO) test -list '^Fuzz' $$dir | grep '^Fuzz'); do \
			echo "fuzz $$dir $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime=$(FUZZTIME) $$dir; \
		done; \
	done

# docs/dashboard.png: the dashboard of the lab test's policy server after
# a live migration, taken by that test in headless Chromium (root).
screenshot: deps build
	WNV_DASHBOARD_SCREENSHOT=$(CURDIR)/docs/dashboard.png $(GO) test -count=1 -run 'TestPolicyServerLab/(Dashboard|LiveMigration)' ./lab/

# The C API's tests: the layout test, and C and C++ programs run against a
# notification server (capi/capi_test.go builds them with capi/Makefile).
ctest:
	@if [ -f capi/Makefile ]; then $(GO) test -count=1 ./capi/; fi

# iproute2 for the lab, ethtool for the GSO tests, gcc, g++ and make for the
# C client and its C++ test, clang, llvm and libbpf-dev to rebuild the eBPF
# fast path (make generate), QEMU and cpio for the lab's real VM guest,
# Chromium for the dashboard's browser test;
# installed only when missing. Then the guest image is built (make guest).
deps:
	@command -v $(GO) >/dev/null 2>&1 || { echo "Go is not installed: get Go 1.26 or newer from https://go.dev/dl"; exit 1; }
	@missing=""; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v ethtool >/dev/null 2>&1 || missing="$$missing ethtool"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing g++"; \
	command -v make >/dev/null 2>&1 || missing="$$missing make"; \
	command -v clang >/dev/null 2>&1 || missing="$$missing clang"; \
	command -v llvm-strip >/dev/null 2>&1 || missing="$$missing llvm"; \
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing="$$missing libbpf-dev"; \
	command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$$missing qemu-system-x86"; \
	command -v cpio >/dev/null 2>&1 || missing="$$missing cpio"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@$(MAKE) --no-print-directory guest

# The lab's QEMU guest: Debian's cloud kernel and busybox, extracted into a
# cache directory (rebuilt only when missing or its recipe changed).
guest:
	@if [ -x lab/guest/build.sh ]; then GO=$(GO) lab/guest/build.sh; fi

# Rebuilds the eBPF objects from their C source with clang (bpf2go); the
# generated files are committed, so a build needs no clang.
generate:
	$(GO) generate ./fastpath/...

# The committed eBPF objects must be what their C source builds to: checked
# in a scratch copy whenever clang is here (make deps installs it).
gencheck:
	@if command -v clang >/dev/null 2>&1 && command -v llvm-strip >/dev/null 2>&1; then \
		tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		cp go.mod go.sum "$$tmp"/ && cp -r fastpath "$$tmp"/ && \
		(cd "$$tmp" && $(GO) generate ./fastpath/... >/dev/null) && \
		for f in datapath_bpfel.go datapath_bpfel.o; do \
			cmp -s fastpath/$$f "$$tmp"/fastpath/$$f || { echo "fastpath/$$f is not what fastpath/bpf builds to: run make generate and commit it"; exit 1; }; \
		done; \
	fi

clean:
	rm -rf $(BIN)
	@if [ -f capi/Makefile ]; then $(MAKE) -C capi clean; fi
