#!/usr/bin/env bash
# Runs a command (`make test`: the test suite) in a private copy of this machine's
# system directories, so that whatever it writes there never reaches the machine.
#
#   packaging/in-private-system.sh [--keep DIR]... -- COMMAND [ARG]...
#
# The suite adds users (useradd: /etc/passwd, /etc/group, /etc/shadow, homes), writes
# PAM services (/etc/pam.d), sudoers rules (/etc/sudoers.d), state (/var/lib), logs
# (sshd and su write /var/log/btmp, wtmp, lastlog), scratch files (/run, /tmp,
# /dev/shm for faketime) and starts sshd, sudo, su and redis-server. Here all of that
# happens in a private mount and PID namespace (util-linux unshare; as root; nothing
# to install):
#
#   - /etc, /home, /root, /var, /usr, /opt and /srv (and /bin, /sbin, /lib*, where
#     they are directories rather than links into /usr) are overlays: the machine's
#     files are the read-only lower layer, every change goes to an upper layer on a
#     tmpfs that only this namespace holds. Mounts below those directories get an
#     overlay of their own (a mounted file, such as a container's /etc/hosts, is
#     copied into the overlay instead).
#   - /run, /tmp and /dev/shm are fresh, empty tmpfs (no host daemon's socket: nscd,
#     logind and the journal do not see the suite's users and sessions; /dev/log
#     leads nowhere, so the module's syslog lines are dropped, except in the tests
#     that bind a private /dev/log of their own).
#   - /proc is the new PID namespace's own, so the pids the suite reads are its own.
#
# Kept as they are, visible and writable at their usual paths (bind-mounted back over
# the overlay or tmpfs when they lie below one, e.g. a CI clone under /tmp or /home):
# this repository, the cargo target directory ($CARGO_TARGET_DIR, else ./target),
# $CARGO_HOME (else ~/.cargo), $RUSTUP_HOME (else ~/.rustup), and any --keep DIR.
# Everything else the command writes in the directories above exists only inside, and
# goes when the namespace ends.
#
# Ending: COMMAND's exit status is this script's. Killing this script (or make, or the
# whole process group), SIGKILL included, ends the namespace: `setpriv --pdeathsig KILL`
# kills unshare when its parent dies, `unshare --kill-child` then kills the namespace's
# first process, and the kernel kills every other process in the namespace (sshd,
# redis-server, pamtester, even those that left the process group). The mounts, and the
# tmpfs holding every change, are freed with the last of them: nothing to clean up.
#
# The network namespace is shared (the suite picks free ports, as before). Nested
# namespaces keep working: the suite's own `unshare --mount` calls and make demo's
# overlays (overlay over these overlays: two levels, the kernel's limit). Where / is
# itself an overlay (a Docker container) that is one level too many for make demo's
# overlays, and the script says so when it starts.
set -euo pipefail

# Overlaid (changes kept on a tmpfs), and replaced by a fresh tmpfs.
OVERLAID=(/etc /home /root /var /usr /opt /srv /bin /sbin /lib /lib32 /lib64 /libx32)
FRESH=(/run /tmp /dev/shm)

fail() {
    echo "in-private-system: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 [--keep DIR]... -- COMMAND [ARG]..." >&2
    exit 2
}

SELF=$(realpath "$0")
REPO=$(realpath "$(dirname "$0")/..")
INSIDE=no
KEEP=()
while [ $# -gt 0 ]; do
    case "$1" in
    --keep) [ $# -ge 2 ] || usage; KEEP+=("$2"); shift 2 ;;
    # Internal: the part that runs inside the namespaces.
    --inside) INSIDE=yes; shift ;;
    --) shift; break ;;
    *) usage ;;
    esac
done
[ $# -ge 1 ] || usage

# Whether path $1 is $2 or below it.
is_under() {
    [ "$1" = "$2" ] || [ "${1#"$2"/}" != "$1" ]
}

# ---------------------------------------------------------------------------------
# Outside: what to keep, then the namespaces.
# ---------------------------------------------------------------------------------
outside() {
    [ "$(id -u)" = 0 ] || fail "run as root (it mounts overlays in a private namespace)"
    for tool in unshare setpriv mount umount findmnt; do
        command -v "$tool" >/dev/null || fail "$tool is missing: bash packaging/deps.sh test"
    done
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null \
        || fail "the kernel has no overlay file system"

    local candidates=("$REPO" "${CARGO_TARGET_DIR:-$REPO/target}"
        "${CARGO_HOME:-$HOME/.cargo}" "${RUSTUP_HOME:-$HOME/.rustup}" "${KEEP[@]}")
    local keep=() dir
    for dir in "${candidates[@]}"; do
        # Relative to where the command runs (make's directory), as cargo reads it.
        [ -e "$dir" ] || continue
        keep+=(--keep "$(realpath "$dir")")
    done

    # setpriv --pdeathsig: if our parent (make) dies, even of SIGKILL, unshare gets
    # SIGKILL; --kill-child then kills the namespace's first process, and with it the
    # namespace. exec: no shell of ours stays between make and unshare.
    exec setpriv --pdeathsig KILL \
        unshare --mount --propagation private --pid --fork --kill-child=SIGKILL --mount-proc -- \
        bash "$SELF" --inside "${keep[@]}" -- "$@"
}

# ---------------------------------------------------------------------------------
# Inside: the first process of the private PID and mount namespace. It stays, as the
# reaper of orphaned processes (a namespace's first process must reap them, or they
# linger as zombies that pgrep still finds), and runs COMMAND as its child.
# ---------------------------------------------------------------------------------
inside() {
    local cwd=$PWD
    # The directories to keep, opened now: the mounts below may hide their paths.
    local keep_fd=() dir fd
    for dir in "${KEEP[@]}"; do
        exec {fd}<"$dir"
        keep_fd+=("$fd")
    done

    # Every mount point at or below an overlaid directory (a directory that is not a
    # mount point itself stands for the part of its parent's file system under it).
    local overlaid=() mounts=() target top
    for top in "${OVERLAID[@]}"; do
        [ -d "$top" ] && [ ! -L "$top" ] && overlaid+=("$top")
    done
    while IFS= read -r target; do
        # findmnt -r writes spaces and the like as \x20.
        target=$(printf '%b' "$target")
        for top in "${overlaid[@]}"; do
            if [ "$target" != "$top" ] && is_under "$target" "$top"; then
                mounts+=("$target")
                break
            fi
        done
    done < <(findmnt -rn -o TARGET)
    mapfile -t mounts < <(printf '%s\n' "${overlaid[@]}" "${mounts[@]}" | LC_ALL=C sort -u)
    for target in "${mounts[@]}"; do
        if [ "$(stat -f -c %T "$target")" = overlayfs ]; then
            echo "in-private-system: $target is an overlay already (a container?): overlays" \
                "mounted inside (make demo's) would exceed the kernel's stacking depth" >&2
            break
        fi
    done

    # A tmpfs for the upper and work directories and for a view of each lower layer
    # without its submounts (a plain bind mount), mounted on /run: /run is not
    # overlaid, and gets a fresh tmpfs of its own below.
    local layers=/run/.in-private-system
    mount -t tmpfs -o mode=0700 in-private-system /run
    mkdir -m 0700 "$layers"
    local i
    for i in "${!mounts[@]}"; do
        if [ -d "${mounts[$i]}" ]; then
            mkdir -p "$layers/$i/lower" "$layers/$i/upper" "$layers/$i/work"
        else
            mkdir -p "$layers/$i"
            touch "$layers/$i/lower"
        fi
        mount --bind "${mounts[$i]}" "$layers/$i/lower"
    done
    # Parents first (sorted): a child's mount point is then reached through its
    # parent's overlay.
    for i in "${!mounts[@]}"; do
        target=${mounts[$i]}
        if [ -d "$layers/$i/lower" ]; then
            mount -t overlay overlay \
                -o "lowerdir=$layers/$i/lower,upperdir=$layers/$i/upper,workdir=$layers/$i/work" \
                "$target" || fail "cannot overlay $target: the command's writes there would reach the machine"
        else
            # A mounted file: its contents copied into the overlay around it.
            cp -p "$layers/$i/lower" "$target" || fail "cannot copy $target into the overlay"
        fi
    done
    # The overlays hold their layers themselves: the views and the tmpfs mount can go
    # (the tmpfs stays, reachable only through the overlays, until they end).
    for i in "${!mounts[@]}"; do
        umount "$layers/$i/lower"
    done
    umount -l /run

    mount -t tmpfs -o mode=0755,nosuid,nodev in-private-system-run /run
    # As on a Debian boot (tmpfiles.d): /var/lock and /run/lock.
    mkdir -m 1777 /run/lock
    mount -t tmpfs -o mode=1777,nosuid,nodev in-private-system-tmp /tmp
    mount -t tmpfs -o mode=1777,nosuid,nodev in-private-system-shm /dev/shm

    # Back: the kept directories below an overlaid or fresh one, as they are (an
    # ancestor kept already brings its descendants).
    local kept=() k skip
    for i in "${!KEEP[@]}"; do
        dir=${KEEP[$i]}
        skip=yes
        for top in "${overlaid[@]}" "${FRESH[@]}"; do
            is_under "$dir" "$top" && skip=no
        done
        for k in "${kept[@]}"; do
            is_under "$dir" "$k" && skip=yes
        done
        if [ "$skip" = no ]; then
            mkdir -p "$dir"
            # --no-canonicalize: the kernel follows the descriptor to the directory
            # opened above; its path now leads to the overlay.
            mount --no-canonicalize --rbind "/proc/self/fd/${keep_fd[$i]}" "$dir"
            kept+=("$dir")
        fi
        fd=${keep_fd[$i]}
        exec {fd}<&-
    done

    if [ -n "${TMPDIR:-}" ] && [ ! -d "$TMPDIR" ]; then
        mkdir -p "$TMPDIR"
        chmod 1777 "$TMPDIR"
    fi
    # Again: the working directory is still the one from before the mounts.
    cd "$cwd"
    local status=0
    "$@" || status=$?
    exit "$status"
}

if [ "$INSIDE" = yes ]; then
    inside "$@"
else
    outside "$@"
fi
