# SoulPad build, test and demo.
GO      ?= go
BIN     := bin
PLUGINS := $(notdir $(wildcard plugins/*))
# runtime/secret (Go 1.26's experiment): crypt-luks erases what its key
# work leaves in registers, on stacks and on the heap. Everything is built
# with it, so the tests run the code that ships.
export GOEXPERIMENT := runtimesecret

.PHONY: all build test test-short fuzz demo proto deps vet fmt clean bench s3server image-test realos-test

all: build

## deps: install the system packages SoulPad needs (Debian; idempotent)
deps:
	@scripts/deps.sh

## s3server: build (once, cached by version) the S3 server the store tests run
s3server:
	@scripts/s3server.sh build >/dev/null

## build: build soulpad and every plugin into bin/
build:
	$(GO) build -o $(BIN)/soulpad ./cmd/soulpad
	@for p in $(PLUGINS); do echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p"; $(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; done

## test: the whole suite (installs what is missing first): vet, gofmt, the
##       race detector on the core, the SDK and the CLI, then every package
##       with the end-to-end walk-up tests (cmd/soulpad/walkup), then the
##       real OS (realos-test) and the bootable pad (image-test) alone
test: deps s3server
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go') | grep -v '\.pb\.go$$')" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -race -count=1 -timeout 20m ./core/... ./sdk/... ./cmd/soulpad/ ./internal/chunkstage/ ./plugins/store-s3/...
	$(GO) test -count=1 -timeout 40m ./...
	SOULPAD_REALOS_TEST=1 $(GO) test -count=1 -run TestRealOS -timeout 40m ./cmd/soulpad/walkup/
	SOULPAD_IMAGE_TEST=1 $(GO) test -count=1 -run 'TestBootablePad|TestImage' -timeout 30m ./internal/padimage/

## image-test: build a bootable pad with `soulpad image` and boot it in QEMU
##             (BIOS, UEFI with Secure Boot, no key disk): about 4 minutes;
##             make test runs it too, after the rest
image-test: deps
	SOULPAD_IMAGE_TEST=1 $(GO) test -count=1 -v -run 'TestBootablePad|TestImage' -timeout 30m ./internal/padimage/

## realos-test: a real Debian 12 (built with mmdebstrap, cached in
##             .cache/debian) imported, booted with BIOS, UEFI and
##             compatible devices, walked and resumed: about 10 minutes;
##             make test runs it too, after the rest
realos-test: deps
	SOULPAD_REALOS_TEST=1 $(GO) test -count=1 -v -run TestRealOS -timeout 40m ./cmd/soulpad/walkup/

## fuzz: run every fuzz target for FUZZTIME each (default 30s); their seed
##       corpora also run in make test
FUZZTIME ?= 30s
fuzz:
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "$(GO) test -run '^$$' -fuzz '^$$f$$' -fuzztime $(FUZZTIME) -parallel 1 $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -parallel 1 $$t || exit 1; \
	  done; \
	done

## test-short: the quick suite (no end-to-end walk-up tests), a few minutes
test-short: deps
	$(GO) test -count=1 -short ./...

## demo: install what is missing, build, run the walk-up demo
##       (VMM=vmm-libvirt runs it on a libvirtd the demo starts and stops;
##       ISR=1 keeps the pad on an S3 server the demo starts and stops, and
##       walks up to a PC that has no pad; DESKTOP=1 takes a real Debian 12
##       system, built with mmdebstrap and imported as a VMDK, through the
##       walk and saves its screen into docs/img)
demo: deps build
	@VMM=$(VMM) ISR=$(ISR) DESKTOP=$(DESKTOP) scripts/demo.sh

## bench: benchmarks that print ratios against a baseline measured in the same run
##        (needs ~20 GB free for the backup benchmark's 4 GiB image; about three
##        hours; SOULPAD_BENCH_REPS=1 for a quicker look); last, the real OS's
##        cell (soulpad bench --os: boot, application response time against
##        the same image outside any vault, the walk at 1 and 2 GiB)
bench: deps s3server build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./plugins/vmm-qemu/...
	$(GO) test -run '^$$' -bench WalkUpThroughVaults -benchtime 1x -timeout 180m ./cmd/soulpad/walkup/
	$(GO) test -run '^$$' -bench ISRCopy -benchtime 1x -timeout 60m ./cmd/soulpad/walkup/
	$(GO) test -run '^$$' -bench BesideQEMU -benchtime 1x -timeout 60m ./plugins/vmm-libvirt/...
	$(GO) test -run '^$$' -bench VaultThroughput -benchtime 6x ./plugins/crypt-luks/...
	$(GO) test -run '^$$' -bench 'XTS$$' ./plugins/crypt-luks/...
	$(GO) test -run '^$$' -bench OnePercent -benchtime 1x -timeout 30m ./plugins/backup-restic/... ./plugins/backup-tsm/...
	scripts/debian-image.sh .cache/debian
	env -u SOULPAD_BENCH_REPS $(BIN)/soulpad bench --os .cache/debian/debian.raw --crypts crypt-plain,crypt-luks --reps $${SOULPAD_BENCH_REPS:-3} --out .cache/bench-realos

## proto: regenerate the gRPC code in sdk/internal/pb with the pinned tools
proto:
	protoc -I sdk/internal/pb \
	  --plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) \
	  --plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
	  --go_out=sdk/internal/pb --go_opt=paths=source_relative \
	  --go-grpc_out=sdk/internal/pb --go-grpc_opt=paths=source_relative \
	  sdk/internal/pb/*.proto

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
