#!/usr/bin/env bash
# The one list of Debian packages that building, testing, the demo and CI need.
#
#   packaging/deps.sh build|demo|test|ci [--check]
#
# As root on an apt system, installs what is missing from that set (and says what).
# Otherwise, or with --check, prints the exact command to run and exits 1 when
# anything is missing. NO_DEPS=1 skips the check (for systems without dpkg that
# have the equivalents installed by other means).
#
# Sets: build (compile the module and tools) < demo (make demo) < test (make test)
# < ci (.ci/run: the package checks, fuzzing). One package per line: add a line.
set -euo pipefail

# package                      sets           what for
PACKAGES='
gcc                            build          the linker cargo uses
libc6-dev                      build          C library headers and crt files for linking
libpam0g-dev                   build          libpam, which pam_otp.so links against
openssh-server                 demo           the demo and test sshd
openssh-client                 demo           ssh and ssh-keygen
oathtool                       demo           codes for the demo and every test
passwd                         demo           useradd, userdel, chpasswd
util-linux                     demo           runuser, setpriv, unshare, mount
pamtester                      test           drives the module through real libpam
faketime                       test           time travel on the PAM client
sudo                           test           sudo as a second factor
zbar-tools                     test           zbarimg reads the QR codes otp-setup draws
librsvg2-bin                   test           rsvg-convert renders the SVG QR code
libpam-google-authenticator    test           files to import; the login benchmark peer
libpam-oath                    test           the login benchmark peer
bsdutils                       test           script: a terminal for otp-setup prompts
e2fsprogs                      test           chattr for the immutable-file cases
redis-server                   test           Redis for the fleet tests, started per test
redis-tools                    test           redis-cli for the fleet tests
redis-sentinel                 test           Sentinel for the fleet failover tests
openssl                        test           a private CA and certificates for the fleet tests
lintian                        ci             checks the Debian package
dpkg-dev                       ci             dpkg-architecture for make deb
binutils                       ci             strip for make install and make deb
g++                            ci             libFuzzer (cargo fuzz)
'

usage() {
    echo "usage: $0 build|demo|test|ci [--check]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
case "$1" in
build) sets="build" ;;
demo) sets="build demo" ;;
test) sets="build demo test" ;;
ci) sets="build demo test ci" ;;
*) usage ;;
esac
check_only=no
[ "${2:-}" = "--check" ] && check_only=yes

if [ -n "${NO_DEPS:-}" ]; then
    echo "deps: NO_DEPS is set: not checking the $1 packages"
    exit 0
fi

wanted=()
while read -r package set _; do
    [ -n "$package" ] || continue
    for s in $sets; do
        [ "$set" = "$s" ] && wanted+=("$package")
    done
done <<<"$PACKAGES"

if ! command -v dpkg-query >/dev/null; then
    echo "deps: no dpkg here: cannot tell whether these are installed (Debian names):" >&2
    echo "  ${wanted[*]}" >&2
    echo "install your system's equivalents, then run again with NO_DEPS=1" >&2
    exit 1
fi

missing=()
for package in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$package")
done

cargo_hint() {
    if ! command -v cargo >/dev/null; then
        echo "deps: cargo is not on PATH: install Rust (https://rustup.rs) first" >&2
        return 1
    fi
}

if [ ${#missing[@]} -eq 0 ]; then
    cargo_hint
    exit 0
fi

command_line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$check_only" = yes ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "deps: missing Debian packages for '$1': ${missing[*]}" >&2
    echo "deps: install them first, as root:" >&2
    echo "  apt-get update && $command_line" >&2
    exit 1
fi

echo "deps: installing for '$1': ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # the package names are words
apt-get install -y --no-install-recommends ${missing[*]}
cargo_hint
