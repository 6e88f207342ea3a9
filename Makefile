# pam-otp: build, test, install. `make test` is the whole test suite (run as root).
PREFIX ?= /usr
DESTDIR ?=
CARGO ?= cargo

.PHONY: all build test lint clean

all: build

build:
	$(CARGO) build --release

# The integration tests load the built pam_otp.so through real libpam, so build it first.
test:
	$(CARGO) build --all-targets
	$(CARGO) test --all-targets -- --test-threads=4

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

# issue 7: every fuzz target for FUZZ_SECONDS each (stable toolchain; see fuzz/README.md).
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)
