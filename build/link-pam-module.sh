#!/bin/sh
# The linker for this target (see .cargo/config.toml): plain `cc`, except for pam_otp.so,
# which gets two things:
#
# 1. GCC's unwinder linked in statically (libgcc_eh.a) instead of a NEEDED entry for
#    libgcc_s.so.1. sshd, sudo, su and login do not load libgcc_s, so with the entry
#    every login would load and unload it (about 0.12 ms, half the module's load time).
#    The module still unwinds inside itself: a panic is caught at the PAM hooks.
#
# 2. The functions a login runs placed together at the start of the code
#    (build/hot-functions.txt, made by build/hot-functions.sh). The kernel maps a
#    module's code 64 KiB around each page a login touches; with the login's ~250 KB of
#    functions scattered over 820 KB, nearly all of it was mapped at every login, then
#    unmapped at pam_end. Together, 60 to 90 pages of code are mapped instead of 170 to
#    205: about 350 KB less resident memory in every sshd and sudo, fewer page faults,
#    3-5 % more logins a second (BENCHMARKS.md). The list names
#    functions without the hashes in their symbols, which change with the compiler, the
#    dependencies and the profile; so the module is linked twice: once with its symbols
#    kept, to learn their full names, then for real with that order. A function missing
#    from the list (new code) only lands after the others: the order never changes
#    what the module does, only where its code sits.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
hot_list="$here/hot-functions.txt"

for arg; do
    case $arg in
    */release/deps/libpam_otp.so) module=yes release=yes ;;
    */libpam_otp*.so) module=yes ;;
    esac
done
if [ "${module:-no}" != yes ]; then
    exec cc "$@"
fi

for arg; do
    shift
    if [ "$arg" = -lgcc_s ]; then
        set -- "$@" -l:libgcc_eh.a
    else
        set -- "$@" "$arg"
    fi
done

# Only a release build is laid out: a debug build is never installed.
if [ "${release:-no}" != yes ] || [ ! -r "$hot_list" ]; then
    exec cc "$@"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same link to a scratch file, with the symbol table kept (no --strip-all).
link_with_symbols() {
    out=$1
    shift
    drop_next=no
    for arg; do
        shift
        if [ "$drop_next" = yes ]; then
            drop_next=no
            continue
        fi
        case $arg in
        -o) drop_next=yes ;;
        -Wl,--strip-all | -Wl,--strip-debug | -s) ;;
        *) set -- "$@" "$arg" ;;
        esac
    done
    cc "$@" -o "$out"
}

if ! link_with_symbols "$work/with-symbols.so" "$@"; then
    # The real link reports the error.
    rm -rf "$work"
    exec cc "$@"
fi

# Each function symbol next to its name without hashes.
nm -P --defined-only "$work/with-symbols.so" |
    awk '$2 ~ /^[tTwW]$/ { print $1 }' | LC_ALL=C sort -u >"$work/symbols"
sed -E -f "$here/symbol-without-hashes.sed" "$work/symbols" | paste - "$work/symbols" >"$work/pairs"
# The listed functions' full names, in the list's order.
awk -F '\t' 'NR == FNR { if (!($0 in rank)) rank[$0] = NR; next }
    ($1 in rank) { print rank[$1] "\t" $2 }' "$hot_list" "$work/pairs" |
    LC_ALL=C sort -n -k1,1 | cut -f2 >"$work/order"
if [ ! -s "$work/order" ]; then
    # A list that matches nothing means this step broke (not merely a stale list).
    echo "link-pam-module.sh: no function of $hot_list is in the module; run build/hot-functions.sh" >&2
    exit 1
fi

cc "$@" "-Wl,--symbol-ordering-file=$work/order" -Wl,--no-warn-symbol-ordering
