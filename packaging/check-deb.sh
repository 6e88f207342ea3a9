#!/usr/bin/env bash
# The Debian package and `make install`, checked on this machine, as root:
#   build the .deb, lintian (no error or warning), dpkg -i, the real-PAM test suite against
#   the INSTALLED module (named plainly as pam_otp.so) and otp-admin; dpkg -r refused while
#   a PAM file names the module, and README's roll-back with a real sshd and sudo
#   (crates/tools/tests/suite/package_rollback.rs); dpkg -r (module and binaries gone, pam-auth-update
#   profile out of common-auth), PAM_OTP_FORCE_REMOVE=1, dpkg -P (state gone); then make
#   install (same files, same places), the same tests, make uninstall (refused alike).
#   Every check fails loudly; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "check-deb: FAILED: $*" >&2
    exit 1
}
step() { echo "==> check-deb: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs and removes the package)"
for tool in cargo-deb lintian dpkg dpkg-architecture pam-auth-update pamtester oathtool strip; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (see .ci/run)"
done

MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
MODULE=/usr/lib/$MULTIARCH/security/pam_otp.so
STATE=/var/lib/pam-otp
SECRETS=$STATE/secrets
POLICY=/etc/security/pam_otp.toml
PROFILE=/usr/share/pam-configs/pam-otp
CHECKER=/usr/lib/$MULTIARCH/pam-otp/pam_otp_check
TARGET_DIR=${CARGO_TARGET_DIR:-target}
INSTALLED_FILES=("$MODULE" "${MODULE%/*}/pam_otp_redis.so" "$CHECKER" /usr/bin/otp-setup /usr/sbin/otp-admin "$PROFILE"
    /usr/share/man/man8/pam_otp.8.gz /usr/share/man/man8/otp-admin.8.gz
    /usr/share/man/man1/otp-setup.1.gz /usr/share/doc/pam-otp/examples/pam_otp.toml)

# This check installs and removes pam-otp: never over an installation it did not make.
if dpkg-query -W -f='${db:Status-Status}' pam-otp 2>/dev/null | grep -qv '^not-installed$'; then
    fail "the pam-otp package is already on this machine; remove it first"
fi
for f in "${INSTALLED_FILES[@]}" "$POLICY" "$STATE"; do
    [ ! -e "$f" ] || fail "$f exists already; this check would overwrite and then remove it"
done

# PAM_OTP_MODULE=pam_otp.so: the suite's services load the installed module (the otp-admin
# tests name it plainly, so libpam finds it by itself) and run /usr/sbin/otp-admin.
# $2: which test targets; $3: which tests of them (libtest filters), all if empty.
run_installed_tests() {
    step "real-PAM tests against the installed files ($1): $2 ${3:-}"
    # shellcheck disable=SC2086 # the arguments are word lists
    PAM_OTP_MODULE=pam_otp.so cargo test --features pam-otp-sys/system-tests,pam-otp-tools/system-tests $2 -- --test-threads=4 ${3:-}
}

step "build the package"
rm -rf "$TARGET_DIR/debian"
make deb
DEB=$(ls "$TARGET_DIR"/debian/pam-otp_*.deb)
dpkg-deb -c "$DEB"
CONTENTS=$(dpkg-deb -c "$DEB" | awk '{print $6}')
for f in "${INSTALLED_FILES[@]}" "$POLICY" /usr/share/doc/pam-otp/copyright; do
    grep -qx ".$f" <<<"$CONTENTS" || fail "$f is not in the package"
done
dpkg-deb -I "$DEB" conffiles | grep -qx "$POLICY" || fail "$POLICY is not a conffile"
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ".$PROFILE" | grep -qx 'Default: no' ||
    fail "the pam-auth-update profile must say Default: no"

step "lintian"
lintian --fail-on error,warning --pedantic -I "$DEB" || fail "lintian found errors or warnings"

step "dpkg -i"
dpkg -i "$DEB"
for f in "${INSTALLED_FILES[@]}" "$POLICY"; do [ -f "$f" ] || fail "$f not installed"; done
# The screen lockers' checker works only setuid root (and must be writable by root only).
check_checker() {
    [ "$(stat -c '%a %U %G' "$CHECKER")" = "4755 root root" ] ||
        fail "$CHECKER is $(stat -c '%a %U %G' "$CHECKER") after $1, not 4755 root root"
}
check_checker "dpkg -i"
for dir in "$STATE" "$SECRETS"; do
    [ "$(stat -c '%a %U %G %F' "$dir")" = "700 root root directory" ] ||
        fail "$dir is $(stat -c '%a %U %G %F' "$dir"), not a 700 root root directory"
done
if grep -q pam_otp /etc/pam.d/common-auth; then
    fail "installing the package turned pam_otp on in common-auth (the profile must be off by default)"
fi
/usr/sbin/otp-admin --version
run_installed_tests "dpkg -i" --tests

step "dpkg -r refused while a PAM file names the module; README's roll-back with real sshd and sudo"
# The test removes the package once the roll-back is done.
PAM_OTP_MODULE=pam_otp.so cargo test --features pam-otp-sys/system-tests,pam-otp-tools/system-tests --test suite -- --ignored --exact \
    package_rollback::package_removal_is_refused_until_the_documented_roll_back
[ ! -e "$MODULE" ] || fail "the roll-back test left the package installed"
dpkg -i "$DEB"

step "dpkg -r with the pam-auth-update profile on and a hand-written PAM file: refused"
DEBIAN_FRONTEND=noninteractive pam-auth-update --enable pam-otp
grep -q pam_otp /etc/pam.d/common-auth || fail "pam-auth-update --enable pam-otp did not add the module"
SERVICE=/etc/pam.d/ta-check-deb
echo "auth required pam_otp.so" >"$SERVICE"
if refusal=$(dpkg -r pam-otp 2>&1); then
    rm -f "$SERVICE"
    fail "dpkg -r removed the module while $SERVICE still uses it"
fi
echo "$refusal"
grep -qx "  $SERVICE" <<<"$refusal" || fail "the refusal does not name $SERVICE"
if grep -q common-auth <<<"$refusal"; then
    fail "the refusal counts the pam-auth-update profile's lines, which removal takes out itself"
fi
grep -q "PAM_OTP_FORCE_REMOVE=1 dpkg -r pam-otp" <<<"$refusal" || fail "the refusal does not say how to override"
[ -f "$MODULE" ] || fail "a refused dpkg -r removed the module"
grep -q pam_otp /etc/pam.d/common-auth || fail "a refused dpkg -r changed common-auth"

step "dpkg -r with only the pam-auth-update profile on: it must leave common-auth"
rm -f "$SERVICE"
touch "$STATE/ta-check.state"
dpkg -r pam-otp
if grep -q pam_otp /etc/pam.d/common-auth; then
    fail "common-auth still names pam_otp.so after dpkg -r: every login would fail"
fi
for f in "$MODULE" "$CHECKER" /usr/bin/otp-setup /usr/sbin/otp-admin "$PROFILE"; do
    [ ! -e "$f" ] || fail "$f is still there after dpkg -r"
done
[ -f "$STATE/ta-check.state" ] || fail "dpkg -r removed the state; only purge may"
[ -f "$POLICY" ] || fail "dpkg -r removed the conffile $POLICY; only purge may"

step "PAM_OTP_FORCE_REMOVE=1 dpkg -r: removes anyway, with a warning naming the file"
dpkg -i "$DEB"
echo "auth required pam_otp.so" >"$SERVICE"
forced=$(PAM_OTP_FORCE_REMOVE=1 dpkg -r pam-otp 2>&1) || { rm -f "$SERVICE"; fail "PAM_OTP_FORCE_REMOVE=1 dpkg -r failed: $forced"; }
rm -f "$SERVICE"
echo "$forced"
grep -q "WARNING: .*$SERVICE still uses pam_otp.so" <<<"$forced" || fail "the forced removal does not warn about $SERVICE"
[ ! -e "$MODULE" ] || fail "PAM_OTP_FORCE_REMOVE=1 dpkg -r left the module"

step "dpkg -P"
dpkg -P pam-otp
[ ! -e "$STATE" ] || fail "$STATE is still there after dpkg -P"
[ ! -e "$POLICY" ] || fail "$POLICY is still there after dpkg -P"

step "make install DESTDIR=...: the same files in the same places as the package"
STAGE=$(mktemp -d /tmp/ta-check-deb.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
make install DESTDIR="$STAGE" >/dev/null
# The package's own Debian files (copyright, changelog, lintian overrides) are not installed.
from_deb=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6}' |
    grep -Ev '^/usr/share/(lintian/|doc/pam-otp/(copyright|changelog))' | sort)
from_make=$(cd "$STAGE" && find . -type f | sed 's/^\.//' | sort)
diff <(echo "$from_deb") <(echo "$from_make") || fail "make install and the package install different files"
for dir in "$STATE" "$SECRETS"; do
    [ "$(stat -c %a "$STAGE$dir")" = 700 ] || fail "make install made $dir with mode $(stat -c %a "$STAGE$dir")"
done

step "make install (for real), then uninstall"
make install
for dir in "$STATE" "$SECRETS"; do
    [ "$(stat -c '%a %U' "$dir")" = "700 root" ] || fail "$dir is not 700 root after make install"
done
check_checker "make install"
run_installed_tests "make install" "--test suite" "otp_admin:: doctor::"
SERVICE=/etc/pam.d/ta-check-deb
echo "auth required pam_otp.so" >"$SERVICE"
if refusal=$(make uninstall 2>&1); then
    rm -f "$SERVICE"
    fail "make uninstall removed the module while $SERVICE still uses it"
fi
echo "$refusal"
grep -qx "  $SERVICE" <<<"$refusal" || fail "make uninstall's refusal does not name $SERVICE"
grep -q "PAM_OTP_FORCE_REMOVE=1 make uninstall" <<<"$refusal" || fail "make uninstall's refusal does not say how to override"
[ -f "$MODULE" ] || fail "a refused make uninstall removed the module"
touch "$STATE/ta-check.state"
forced=$(make uninstall FORCE=1 2>&1) || { rm -f "$SERVICE"; fail "make uninstall FORCE=1 failed: $forced"; }
rm -f "$SERVICE"
grep -q "WARNING: .*$SERVICE still uses pam_otp.so" <<<"$forced" || fail "make uninstall FORCE=1 does not warn about $SERVICE"
for f in "${INSTALLED_FILES[@]}" "$POLICY"; do
    [ ! -e "$f" ] || fail "$f is still there after make uninstall"
done
[ -f "$STATE/ta-check.state" ] || fail "make uninstall removed the state without PURGE=1"
make uninstall PURGE=1
[ ! -e "$STATE" ] || fail "make uninstall PURGE=1 left $STATE"

step "all package checks passed"
