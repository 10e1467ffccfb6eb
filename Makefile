# regionkv — build, test and tooling targets. `make help` lists them.

GO        ?= go
PKGS      := ./...
BIN       := bin
# Short runs for everyday `make test`; `make test-long` raises them.
TEST_FLAGS ?= -race -timeout 20m
LONG_FLAGS ?= -timeout 60m

.PHONY: help build test test-long test-cluster bench bench-compare proto verify fmt vet cross check-proto playground clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## Build every package and the binaries under bin/.
	$(GO) build $(PKGS)
	@mkdir -p $(BIN)
	@for d in cmd/*/; do [ -f "$$d/main.go" ] && $(GO) build -o $(BIN)/$$(basename $$d) ./$$d || true; done

test: ## Run the whole test suite (with the race detector), as CI does.
	$(GO) test $(TEST_FLAGS) $(PKGS)

test-cluster: ## Run only the multi-process cluster tests (real scheduler and store processes).
	$(GO) test $(TEST_FLAGS) -v -run . ./internal/testcluster/ ./kv/client/

test-long: ## Run the long soak and scale scenarios too.
	REGIONKV_LONG=1 $(GO) test $(LONG_FLAGS) $(PKGS)

bench: ## Run the Go benchmarks of the hot paths.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x ./kv/... ./router/... ./raftstore/...

bench-compare: ## Compare regionkv with a 3-member etcd 3.6 on this machine (builds etcd first; a few minutes).
	BIN=$(BIN) ./scripts/bench-compare.sh

proto: ## Regenerate proto/*/*.pb.go (needs protoc; installs protoc-gen-gofast).
	./scripts/genproto.sh

fmt: ## gofmt every Go file.
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet $(PKGS)

# The store is built for Linux and also compiles (untested) for macOS and the
# BSDs; the client, the scheduler and the tools build for Windows too.
WINDOWS_PKGS := ./kv/client/... ./cmd/regionkv-ctl ./cmd/regionkv-bench ./cmd/regionkv-scheduler

cross: ## Type-check everything (tests too) for macOS, and build the client side for Windows.
	GOOS=darwin GOARCH=arm64 $(GO) vet $(PKGS)
	GOOS=windows $(GO) build -o /dev/null $(WINDOWS_PKGS)

check-proto: ## Fail if the generated code is not what `make proto` produces.
	@if command -v protoc >/dev/null; then \
		./scripts/genproto.sh && git diff --exit-code -- proto/ || { echo "generated code is stale: run make proto"; exit 1; }; \
	else echo "protoc not installed: skipping the generated-code check"; fi

verify: vet cross check-proto ## gofmt, go vet (here and cross-compiled) and the generated-code drift check.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

playground: build ## A scheduler and three stores on loopback, in the foreground (Ctrl-C stops them).
	BIN=$(BIN) ./scripts/playground.sh

clean:
	rm -rf $(BIN)
