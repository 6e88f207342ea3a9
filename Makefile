# pam-otp: build, test, install. `make test` is the whole test suite (run as root).
PREFIX ?= /usr
DESTDIR ?=
CARGO ?= cargo

.PHONY: all build test lint clean install uninstall deb check-deb deps demo

all: build

# The Debian packages each target needs are listed once, in packaging/deps.sh: as root it
# installs what is missing; otherwise it prints the apt-get command and stops the target
# before anything is compiled. `make deps` installs everything CI needs.
DEPS := bash packaging/deps.sh

deps:
	$(DEPS) ci

build:
	@$(DEPS) build
	$(CARGO) build --release

# The integration tests load the built pam_otp.so through real libpam, so build it first
# (and the release build, which the suite's `make demo` runs). The system suite (root,
# real sshd, sudo, su, Redis) is behind the SYSTEM_TESTS features; a plain `cargo test`
# runs only what needs no root.
# The tests add users, write /etc/pam.d, /etc/sudoers.d, homes, /var/lib and /var/log,
# and start sshd, sudo, su and redis-server: they run through
# packaging/in-private-system.sh, in a private mount and PID namespace where /etc, /home,
# /root, /var, /usr, /opt and /srv are overlays whose changes live on a tmpfs, and /run,
# /tmp and /dev/shm are fresh tmpfs. Nothing they write there reaches this machine, and
# when the run ends, however it ends (SIGKILL of make included), every process and every
# change goes with it. The repository, the target directory, CARGO_HOME and RUSTUP_HOME
# stay the machine's own (the builds run outside). The script's header says more.
SYSTEM_TESTS := pam-otp-sys/system-tests,pam-otp-tools/system-tests
test:
	@$(DEPS) test
	$(CARGO) build --all-targets --features $(SYSTEM_TESTS)
	$(CARGO) build --release
	bash packaging/in-private-system.sh -- $(CARGO) test --all-targets --features $(SYSTEM_TESTS) -- --test-threads=4

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features $(SYSTEM_TESTS) -- -D warnings

clean:
	$(CARGO) clean

# A second sshd on 127.0.0.1:$(DEMO_PORT) asking a throw-away user for password + code,
# all in a private mount and PID namespace: the system's sshd never sees the user, and
# everything goes when the demo stops (Ctrl-C) or dies. Never touches the system's sshd
# or PAM files.
DEMO_PORT ?= 2222
DEMO_NAME ?= otpdemo
# Its host key, kept so that ssh knows it at the next run.
DEMO_KEY_DIR ?= /var/lib/pam-otp-demo
demo:
	@$(DEPS) demo
	$(CARGO) build --release
	bash packaging/demo.sh --port $(DEMO_PORT) --name $(DEMO_NAME) --key-dir $(DEMO_KEY_DIR)

# ---- Installing, with or without a package manager ----
# `make install` puts the same files in the same places as the Debian package;
# `make uninstall` removes them again (the state in $(STATEDIR) stays unless PURGE=1).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE := $(TARGET_DIR)/release
# Debian's multiarch triplet (x86_64-linux-gnu): libpam finds modules named without a path
# in /usr/lib/<triplet>/security.
MULTIARCH ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null)
PAMDIR ?= $(PREFIX)/lib/$(if $(MULTIARCH),$(MULTIARCH)/)security
# The setuid checker for callers that are not root: pam_otp.so runs it from
# $(PAMDIR)/../pam-otp, so the two directories move together.
CHECKERDIR := $(dir $(PAMDIR))pam-otp
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
DOCDIR ?= $(DATADIR)/doc/pam-otp
MANDIR ?= $(DATADIR)/man
# The module and otp-admin read these fixed paths, whatever PREFIX is.
POLICY := /etc/security/pam_otp.toml
STATEDIR := /var/lib/pam-otp
INSTALL ?= install
STRIP ?= strip
MANPAGES := man8/pam_otp.8 man8/otp-admin.8 man1/otp-setup.1

install: build
	$(INSTALL) -D -m 0644 $(RELEASE)/libpam_otp.so $(DESTDIR)$(PAMDIR)/pam_otp.so
	$(INSTALL) -D -m 0644 $(RELEASE)/libpam_otp_redis.so $(DESTDIR)$(PAMDIR)/pam_otp_redis.so
	$(INSTALL) -D -m 0755 $(RELEASE)/otp-setup $(DESTDIR)$(BINDIR)/otp-setup
	$(INSTALL) -D -m 0755 $(RELEASE)/otp-admin $(DESTDIR)$(SBINDIR)/otp-admin
	$(INSTALL) -D -m 0755 $(RELEASE)/pam_otp_check $(DESTDIR)$(CHECKERDIR)/pam_otp_check
	$(STRIP) --strip-unneeded $(DESTDIR)$(PAMDIR)/pam_otp.so $(DESTDIR)$(PAMDIR)/pam_otp_redis.so $(DESTDIR)$(BINDIR)/otp-setup $(DESTDIR)$(SBINDIR)/otp-admin $(DESTDIR)$(CHECKERDIR)/pam_otp_check
	@# Setuid root once stripped (as root; a DESTDIR staging tree keeps the mode for the packager).
	chmod 4755 $(DESTDIR)$(CHECKERDIR)/pam_otp_check
	@# The policy file is the administrator's once installed: never overwritten.
	@if [ -e $(DESTDIR)$(POLICY) ]; then \
		echo "keeping $(DESTDIR)$(POLICY); the shipped one is $(DOCDIR)/examples/pam_otp.toml"; \
	else \
		echo "$(INSTALL) -D -m 0644 config/pam_otp.toml $(DESTDIR)$(POLICY)"; \
		$(INSTALL) -D -m 0644 config/pam_otp.toml $(DESTDIR)$(POLICY); \
	fi
	$(INSTALL) -d -m 0700 $(DESTDIR)$(STATEDIR) $(DESTDIR)$(STATEDIR)/secrets
	for f in $$(cd config && find . -type f | sed 's|^\./||' | sort); do \
		$(INSTALL) -D -m 0644 config/$$f $(DESTDIR)$(DOCDIR)/examples/$$f || exit 1; \
	done
	$(INSTALL) -D -m 0644 config/pam-configs/pam-otp $(DESTDIR)$(DATADIR)/pam-configs/pam-otp
	$(INSTALL) -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	for page in $(MANPAGES); do \
		$(INSTALL) -d -m 0755 $(DESTDIR)$(MANDIR)/$$(dirname $$page) && \
		gzip -9n -c packaging/man/$$(basename $$page) > $(DESTDIR)$(MANDIR)/$$page.gz && \
		chmod 0644 $(DESTDIR)$(MANDIR)/$$page.gz || exit 1; \
	done

# Refuses while a PAM service still names the module: removing it would fail every login
# through that service. The package's own prerm decides, so both refuse alike (and the
# pam-auth-update profile leaves common-auth first). FORCE=1 (or PAM_OTP_FORCE_REMOVE=1)
# removes anyway; PURGE=1 also removes state and policy. A DESTDIR staging tree has no
# live PAM configuration to protect.
uninstall:
	@if [ -z "$(DESTDIR)" ]; then \
		PAM_OTP_FORCE_REMOVE=$(if $(FORCE),1,$(PAM_OTP_FORCE_REMOVE)) \
		PAM_OTP_REMOVE_COMMAND="make uninstall" sh packaging/debian/prerm remove; \
	fi
	rm -f $(DESTDIR)$(PAMDIR)/pam_otp.so $(DESTDIR)$(PAMDIR)/pam_otp_redis.so $(DESTDIR)$(BINDIR)/otp-setup $(DESTDIR)$(SBINDIR)/otp-admin
	rm -f $(DESTDIR)$(CHECKERDIR)/pam_otp_check
	-rmdir $(DESTDIR)$(CHECKERDIR) 2>/dev/null
	rm -f $(DESTDIR)$(DATADIR)/pam-configs/pam-otp
	rm -rf $(DESTDIR)$(DOCDIR)
	for page in $(MANPAGES); do rm -f $(DESTDIR)$(MANDIR)/$$page.gz; done
	@if [ -n "$(PURGE)" ]; then \
		echo "rm -rf $(DESTDIR)$(STATEDIR) $(DESTDIR)$(POLICY)"; \
		rm -rf $(DESTDIR)$(STATEDIR) $(DESTDIR)$(POLICY); \
	elif cmp -s config/pam_otp.toml $(DESTDIR)$(POLICY); then \
		echo "rm -f $(DESTDIR)$(POLICY) (unchanged); kept $(DESTDIR)$(STATEDIR) (PURGE=1 removes it)"; \
		rm -f $(DESTDIR)$(POLICY); \
	else \
		echo "kept $(DESTDIR)$(POLICY) and $(DESTDIR)$(STATEDIR) (PURGE=1 removes them)"; \
	fi

# The Debian package, in $(TARGET_DIR)/debian/. cargo-deb cannot name the multiarch
# directory, so the module is staged under it here and packaged from there.
STAGE := packaging/stage
deb: build
	@test -n "$(MULTIARCH)" || { echo "cannot tell the multiarch triplet: install dpkg-dev" >&2; exit 1; }
	rm -rf $(STAGE)
	$(INSTALL) -D -m 0644 $(RELEASE)/libpam_otp.so $(STAGE)/lib/$(MULTIARCH)/security/pam_otp.so
	$(STRIP) --strip-unneeded --remove-section=.comment --remove-section=.note $(STAGE)/lib/$(MULTIARCH)/security/pam_otp.so
	$(INSTALL) -D -m 0644 $(RELEASE)/libpam_otp_redis.so $(STAGE)/lib/$(MULTIARCH)/security/pam_otp_redis.so
	$(STRIP) --strip-unneeded --remove-section=.comment --remove-section=.note $(STAGE)/lib/$(MULTIARCH)/security/pam_otp_redis.so
	@# The setuid checker is staged apart: cargo-deb gives each asset glob one mode (4755).
	$(INSTALL) -D -m 0755 $(RELEASE)/pam_otp_check $(STAGE)/setuid/$(MULTIARCH)/pam-otp/pam_otp_check
	$(STRIP) --strip-unneeded --remove-section=.comment --remove-section=.note $(STAGE)/setuid/$(MULTIARCH)/pam-otp/pam_otp_check
	$(CARGO) deb --no-build

# Builds, lints, installs, tests and removes the package on this machine (as root; CI).
check-deb:
	bash packaging/check-deb.sh

# Every fuzz target for FUZZ_SECONDS each (stable toolchain; see fuzz/README.md).
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)
