#!/bin/sh
# Remakes build/hot-functions.txt: the functions of pam_otp.so that logins run, which
# build/link-pam-module.sh places together at the start of the module's code. Run it as
# root (the login benchmark makes its own users) after changing what a login runs; it
# needs valgrind and the benchmark's peers (`sudo bash packaging/deps.sh test`). A
# stale list costs only memory and speed, never correctness: BENCHMARKS.md shows how
# much.
#
# It builds the module with its symbols; runs under callgrind every file-store contender
# of the login benchmark (right and wrong codes, lockout on, a locked user, TOTP
# windows) and a few pamtester logins with the default policy; and lists each function
# the module ran, those that most runs ran first, without the hashes in their symbols
# (symbol-without-hashes.sed) or the `'N` that callgrind appends to recursive calls.
set -eu
cd "$(dirname "$0")/.."
target=target/hot-functions
module=$target/release/libpam_otp.so
# The pamtester logins' throw-away user, state and service (below).
user=otphot$$
state=/var/lib/otp-hot-$$
service=/etc/pam.d/otp-hot-$$
work=$(mktemp -d)
cleanup() {
    userdel -r "$user" 2>/dev/null || true
    rm -rf "$state" "$service" "$work"
}
trap cleanup EXIT

CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --lib
bench=$(CARGO_TARGET_DIR=$target cargo bench --bench logins --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)

valgrind --tool=callgrind --demangle=no --trace-children=yes \
    --trace-children-skip='*/useradd,*/userdel,*/oathtool,*/getent,*/id,*/findmnt,*/uname' \
    --callgrind-out-file="$work/callgrind.%p" \
    "$bench" --bench --only otp,otp-tmpfs,otp-limit,otp-w1,otp-w100,otp-locked --mode both \
    --logins 20 --rounds 1 --warmup 0 --dlopens 0 --module "$module" >/dev/null 2>"$work/log" ||
    { cat "$work/log" >&2; exit 1; }

# The same module through pamtester with the default policy, as most hosts run it, and
# a remote address as sshd gives (IPv4, then IPv6): a TOTP code, the same code again,
# then wrong codes until the address is locked out.
useradd -m "$user"
secret=$(head -c 20 /dev/urandom | base32 | tr -d =)
home=$(getent passwd "$user" | cut -d: -f6)
printf 'version = 1\ntype = "totp"\nsecret = "%s"\n' "$secret" >"$home/.otp.toml"
chown "$user:" "$home/.otp.toml"
chmod 600 "$home/.otp.toml"
mkdir -m 700 "$state"
echo "auth required $PWD/$module state_dir=$state" >"$service"
code=$(oathtool --totp -b "$secret")
for login in "$code 192.0.2.7" "$code 2001:db8::7" "000000 192.0.2.7" "000000 192.0.2.7" \
    "000000 192.0.2.7" "000000 192.0.2.7" "000000 192.0.2.7" "000000 192.0.2.7"; do
    echo "${login% *}" | valgrind --tool=callgrind --demangle=no \
        --callgrind-out-file="$work/callgrind.pamtester.%p" \
        pamtester -I "rhost=${login#* }" "otp-hot-$$" "$user" authenticate >/dev/null 2>&1 || true
done

# callgrind names each object and function once per file, as `ob=(id) name`, then by
# `(id)` alone; a function's lines follow `fn=`, under the last `ob=`.
for profile in "$work"/callgrind.*; do
    awk '
        /^c?ob=\(/ { id = $1; sub(/^c?ob=/, "", id); if (NF > 1) objects[id] = $2
                     if ($1 ~ /^ob=/) object = objects[id]; next }
        /^c?fn=\(/ { id = $1; sub(/^c?fn=/, "", id); if (NF > 1) functions[id] = $2
                     if ($1 ~ /^fn=/ && object ~ /libpam_otp/) ran[functions[id]] = 1 }
        END { for (name in ran) print name }' "$profile"
done | grep -v '^0x' |
    sed -E "s/'[0-9]+$//" | sed -E -f build/symbol-without-hashes.sed |
    LC_ALL=C sort | uniq -c | LC_ALL=C sort -k1,1nr -k2,2 | awk '{ print $2 }' >"$work/list"

[ -s "$work/list" ] || { echo "no function of $module ran: see $work/log" >&2; exit 1; }
mv "$work/list" build/hot-functions.txt
echo "build/hot-functions.txt: $(wc -l <build/hot-functions.txt) functions"
# Cargo does not know the linker reads the list: relink so the next build uses it.
touch src/lib.rs
