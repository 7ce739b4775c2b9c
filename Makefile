# The README's two commands and the sanitizer build. CMake does the building; this file only
# installs missing dependencies, picks build folders and starts the server or the tests.
#
#   make run            install missing Debian packages, fetch ONNX Runtime and the sample
#                       models, build build/ (Release), serve the default model repository
#   make test           the same set-up, then every test in build/ through CTest
#   make test-sanitize  build build-asan/ with clang, ASan and UBSan, then every test
#   make test-fault     build build-fault/ with clang, ASan, UBSan and allocation failure
#                       injection, then run tests/fault
#   make test-tsan      build build-tsan/ with clang and ThreadSanitizer, then every test
#   make build-fuzz     build the libFuzzer drivers in build-fuzz/ with clang, ASan and UBSan
#   make fuzz-ci        run every driver for FUZZ_SECONDS (default 20) seconds; fails on a crash
#   make fuzz           run one driver, FUZZER=NAME, for FUZZ_SECONDS seconds (fuzz/README.md)
#
# Variables: HOST, PORT, METRICS_PORT and RUN_ARGS (extra onnxserve flags) for make run; JOBS for parallel
# builds; CMAKE_ARGS for extra CMake flags such as -DONNXRUNTIME_ROOT=/opt/onnxruntime;
# ONNXSERVE_CACHE for the download cache (default ~/.cache/onnxserve).

SHELL := /bin/bash

CACHE := $(if $(ONNXSERVE_CACHE),$(ONNXSERVE_CACHE),$(HOME)/.cache/onnxserve)
JOBS ?= $(shell nproc)
HOST ?= 127.0.0.1
PORT ?= 8000
METRICS_PORT ?= 8002
RUN_ARGS ?=
CMAKE_ARGS ?=
FUZZ_SECONDS ?= 20
FUZZER ?= http_session
FUZZERS := http_session json_infer binary_infer config model_name

# Where scripts/fetch-deps.sh puts ONNX Runtime and the sample models. CMAKE_ARGS comes later
# on the command line, so a -DONNXRUNTIME_ROOT there wins.
DEPS_ARGS := -DONNXRUNTIME_ROOT=$(CACHE)/onnxruntime-1.29.0 -DOXS_MODELS_DIR=$(CACHE)/models

.PHONY: all deps build run test build-sanitize test-sanitize build-tsan test-tsan clean \
	build-fuzz fuzz-ci fuzz

all: build

deps:
	scripts/install-deps.sh
	ONNXSERVE_CACHE=$(CACHE) scripts/fetch-deps.sh >/dev/null

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(DEPS_ARGS) $(CMAKE_ARGS)
	cmake --build build -j $(JOBS)

run: build
	scripts/make-default-repo.sh build/model-repository $(CACHE)/models
	@echo "make run: serving build/model-repository on http://$(HOST):$(PORT); Ctrl-C stops it"
	./build/onnxserve --model-repository build/model-repository --host $(HOST) \
	  --http-port $(PORT) --metrics-port $(METRICS_PORT) $(RUN_ARGS)

test: build
	cd build && ctest --output-on-failure -j2

build-sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DOXS_SANITIZE=ON \
	  -DCMAKE_C_COMPILER=clang $(DEPS_ARGS) $(CMAKE_ARGS)
	cmake --build build-asan -j $(JOBS)

test-sanitize: build-sanitize
	cd build-asan && ctest --output-on-failure -j2

# Only the fault test is built and run here: the other tests run in build-asan/.
.PHONY: build-fault test-fault
build-fault: deps
	cmake -S . -B build-fault -DCMAKE_BUILD_TYPE=Debug -DOXS_SANITIZE=ON \
	  -DOXS_FAULT_INJECTION=ON -DCMAKE_C_COMPILER=clang $(DEPS_ARGS) $(CMAKE_ARGS)
	cmake --build build-fault -j $(JOBS) --target test_fault

test-fault: build-fault
	cd build-fault && ctest --output-on-failure -R '^fault\.'

build-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DOXS_TSAN=ON \
	  -DCMAKE_C_COMPILER=clang $(DEPS_ARGS) $(CMAKE_ARGS)
	cmake --build build-tsan -j $(JOBS)

test-tsan: build-tsan
	cd build-tsan && ctest --output-on-failure -j2

build-fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DOXS_SANITIZE=ON -DOXS_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang $(DEPS_ARGS) $(CMAKE_ARGS)
	cmake --build build-fuzz -j $(JOBS) --target oxs_fuzzers

fuzz-ci: build-fuzz
	fuzz/run.sh --fresh build-fuzz $(FUZZ_SECONDS) $(FUZZERS)

fuzz: build-fuzz
	fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZER)

clean:
	rm -rf build build-asan build-tsan build-fuzz build-fault
