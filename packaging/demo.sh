#!/usr/bin/env bash
# `make demo`: pam-otp working on this machine without touching its sshd or PAM files,
# and without opening a door on it, not even while it runs.
#
# Makes a throw-away user with a password, enrolls it with otp-setup (QR code for a
# phone app, secret for oathtool), writes a PAM service of its own, and starts a second
# sshd on 127.0.0.1:PORT (own config, pid file) that asks for the password and then the
# code. All of that happens in a private mount and PID namespace: /etc, /home and
# /var/lib are overlays whose changes live on a tmpfs, /run is a tmpfs. So the user and
# its password exist for the demo's sshd only (the machine's own sshd, su, login...
# never see them), and when the demo ends, however it ends (Ctrl-C, SIGTERM, SIGKILL of
# this script), the kernel kills every process in it and the overlays vanish. The
# network is shared, so the ssh client on this machine reaches the demo's sshd.
#
# The one thing kept across runs is the demo sshd's host key (in --key-dir, root-only),
# so that the printed ssh command keeps working: ssh remembers the key at the first run
# and would refuse a new one at the next.
#
#   packaging/demo.sh [--port 2222] [--name otpdemo] [--bin-dir target/release]
#                     [--info FILE] [--key-dir /var/lib/pam-otp-demo]
#
# --name: the user (and, as NAME-sshd, the PAM service); --bin-dir: where the built
# libpam_otp.so and otp-setup are; --info FILE: also write user, password, secret and
# port there (for scripts and tests) once the sshd listens, removed when it stops.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=2222
NAME=otpdemo
BIN_DIR=${CARGO_TARGET_DIR:-target}/release
INFO=
KEY_DIR=/var/lib/pam-otp-demo
INSIDE=no
while [ $# -gt 0 ]; do
    case "$1" in
    --port) PORT=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --info) INFO=$2; shift 2 ;;
    --key-dir) KEY_DIR=$2; shift 2 ;;
    # Internal: the part that runs inside the namespaces.
    --inside) INSIDE=yes; shift ;;
    *) echo "usage: $0 [--port N] [--name USER] [--bin-dir DIR] [--info FILE] [--key-dir DIR]" >&2; exit 2 ;;
    esac
done

fail() {
    echo "demo: $*" >&2
    exit 1
}

SERVICE=$NAME-sshd
PAM_FILE=/etc/pam.d/$SERVICE
RUN=/run/pam-otp-demo/$NAME
CONFIG=$RUN/sshd_config
HOST_KEY=$KEY_DIR/ssh_host_ed25519_key
# Marks the accounts this script makes, so that only those are ever removed.
GECOS="pam-otp demo (throw-away)"

# ---------------------------------------------------------------------------------
# Outside: checks, the host key, then the namespaces; waits for them and passes on
# SIGINT and SIGTERM.
# ---------------------------------------------------------------------------------
outside() {
    [ "$(id -u)" = 0 ] || fail "run as root (it makes a user and starts an sshd): sudo make demo"
    [[ "$NAME" =~ ^[a-z][a-z0-9-]{0,24}$ ]] || fail "--name must be a plain lower-case user name"
    [[ "$PORT" =~ ^[0-9]+$ ]] || fail "--port must be a number"
    for tool in /usr/sbin/sshd ssh-keygen useradd userdel chpasswd runuser unshare setpriv mount; do
        command -v "$tool" >/dev/null || fail "$tool is missing: bash packaging/deps.sh demo"
    done
    for built in libpam_otp.so otp-setup; do
        [ -f "$BIN_DIR/$built" ] || fail "$BIN_DIR/$built is missing: cargo build --release first"
    done
    BIN_DIR=$(realpath "$BIN_DIR")
    KEY_DIR=$(realpath -m "$KEY_DIR")
    HOST_KEY=$KEY_DIR/ssh_host_ed25519_key
    if [ -n "$INFO" ]; then
        INFO=$(realpath -m "$INFO")
        rm -f "$INFO"
    fi

    remove_older_leftovers
    # The demo user must be ours: never shadow an account that exists for other reasons.
    if getent passwd "$NAME" >/dev/null; then
        fail "user $NAME exists on this machine: pick another --name"
    fi

    if [ ! -f "$HOST_KEY" ]; then
        install -d -m 0700 "$KEY_DIR"
        ssh-keygen -q -t ed25519 -N "" -C "pam-otp demo" -f "$HOST_KEY"
    fi

    # setpriv --pdeathsig: if this script is killed (even SIGKILL), unshare is killed
    # too, and --kill-child then kills the namespace's first process: the kernel ends
    # every other process in it and the mounts go with the last one.
    local inner=(setpriv --pdeathsig KILL
        unshare --mount --propagation private --pid --fork --kill-child=SIGKILL --
        bash "$PWD/packaging/demo.sh" --inside --port "$PORT" --name "$NAME" --bin-dir "$BIN_DIR"
        --key-dir "$KEY_DIR" --info "$INFO")
    local status=0
    if [ -t 0 ]; then
        # At a terminal, Ctrl-C goes to its foreground process group, which holds make
        # and this script too: make would die of SIGINT and exit 130 whatever the demo
        # does. With job control the demo runs as a foreground job of its own, so Ctrl-C
        # reaches the demo only, which stops cleanly, and make sees exit 0.
        set -m
        "${inner[@]}" || status=$?
        set +m
    else
        # No terminal (scripts, tests, CI's timeout): the signals come to this process;
        # unshare blocks SIGINT and SIGTERM, so they are passed to the namespace's first
        # process, the inner script. SIGTERM, since a background command starts with
        # SIGINT ignored, which bash then cannot trap.
        "${inner[@]}" &
        local pid=$!
        INTERRUPTED=no
        trap 'forward_stop '"$pid" INT TERM
        while :; do
            INTERRUPTED=no
            status=0
            wait "$pid" || status=$?
            # A trapped signal ends `wait` early; wait again for the demo to finish.
            [ "$INTERRUPTED" = yes ] || break
        done
    fi
    [ -z "$INFO" ] || rm -f "$INFO"
    exit "$status"
}

# shellcheck disable=SC2317 # called from the trap above
forward_stop() {
    INTERRUPTED=yes
    local first
    first=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
    # shellcheck disable=SC2086 # at most one pid
    [ -z "$first" ] || kill -TERM $first 2>/dev/null || true
}

# Demos before the namespaces made the user, its PAM file and its sshd on the host
# itself; one that was killed left them there, the user with a printed password.
remove_older_leftovers() {
    local pids="" pid my_ns
    my_ns=$(readlink /proc/self/ns/pid)
    # Only sshds in this PID namespace: a demo running now has its own.
    for pid in $(pgrep -f -- "-f $CONFIG( |\$)" || true); do
        if [ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" = "$my_ns" ]; then
            pids="$pids $pid"
        fi
    done
    local user_is_ours=no
    if [ "$(getent passwd "$NAME" | cut -d: -f5)" = "$GECOS" ]; then
        user_is_ours=yes
    fi
    if [ -z "$pids" ] && [ "$user_is_ours" = no ] && [ ! -e "$PAM_FILE" ] && [ ! -e "$RUN" ]; then
        return 0
    fi
    echo "demo: removing what an earlier demo left behind (user $NAME, $PAM_FILE, $RUN)"
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    if [ "$user_is_ours" = yes ]; then
        # Logged-in sessions of the demo user go too, or userdel refuses.
        pkill -KILL -u "$NAME" 2>/dev/null || true
        sleep 0.2
        userdel -r -f "$NAME" >/dev/null 2>&1 || userdel -f "$NAME" >/dev/null 2>&1 || true
    fi
    rm -f "$PAM_FILE"
    rm -rf "$RUN"
    rmdir /run/pam-otp-demo 2>/dev/null || true
}

# ---------------------------------------------------------------------------------
# Inside: the first process of a private PID and mount namespace.
# ---------------------------------------------------------------------------------
inside() {
    # As the namespace's first process this script gets only signals it traps. Ending
    # it ends the namespace: nothing to remove by hand.
    trap 'echo; echo "demo: stopping; the user, its home, the PAM file, the sshd and the state go with it"; exit 0' INT TERM HUP

    # The mounts below hide the host's /etc, /home, /var/lib and /run, where the build,
    # the host key or --info may be. Directories opened before stay reachable through
    # /proc/self/fd (inherited by the commands run here).
    local host_key
    host_key=$(cat "$HOST_KEY")
    exec 8<"$BIN_DIR"
    local bin=/proc/self/fd/8 info_at=""
    if [ -n "$INFO" ]; then
        exec 9<"$(dirname "$INFO")"
        info_at=/proc/self/fd/9/$(basename "$INFO")
    fi

    # The overlays' changes go to a tmpfs on /run (not overlaid itself), which also
    # gives sshd a /run/sshd of its own and hides the host's daemons' sockets (nscd
    # would answer for the host's users, not the demo's).
    mount -t tmpfs -o mode=0755 pam-otp-demo /run
    local layers=/run/pam-otp-demo/.layers dir name
    for dir in /etc /home /var/lib; do
        name=${dir//\//_}
        mkdir -p "$layers/$name/upper" "$layers/$name/work"
        mount -t overlay overlay \
            -o "lowerdir=$dir,upperdir=$layers/$name/upper,workdir=$layers/$name/work" "$dir"
    done
    chmod 0700 "$layers"

    install -d -m 0755 "$RUN"
    # Copies any user can run (the build tree may be in a private home).
    install -m 0755 "$bin/otp-setup" "$RUN/otp-setup"
    install -m 0644 "$bin/libpam_otp.so" "$RUN/pam_otp.so"
    (umask 077 && printf '%s\n' "$host_key" >"$RUN/ssh_host_ed25519_key")
    install -d -m 0700 "$RUN/state"

    echo "demo: user $NAME, seen only by the demo's sshd (gone when the demo stops)"
    useradd -m -s /bin/bash -c "$GECOS" "$NAME"
    local password secret
    password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 12)
    echo "$NAME:$password" | chpasswd

    echo "demo: enrolling $NAME with otp-setup; scan the QR code with your phone's app:"
    (cd / && runuser -u "$NAME" -- "$RUN/otp-setup" --no-confirm --issuer "pam-otp demo" \
        --label "$NAME@127.0.0.1:$PORT" 8<&- 9<&-)
    secret=$(sed -n 's/^secret = "\(.*\)"$/\1/p' "$(getent passwd "$NAME" | cut -d: -f6)/.otp.toml")
    [ -n "$secret" ] || fail "otp-setup wrote no secret"

    # The policy: the shipped file, with this demo's own state directory.
    sed "s|^# state_dir = .*|state_dir = \"$RUN/state\"|" config/pam_otp.toml >"$RUN/pam_otp.toml"
    chmod 0644 "$RUN/pam_otp.toml"
    # The PAM service: the shipped "password, then code" file, naming this demo's module.
    sed "s|pam_otp\.so|$RUN/pam_otp.so policy=$RUN/pam_otp.toml|" config/pam.d/sshd-password-otp >"$PAM_FILE"
    chmod 0644 "$PAM_FILE"

    cat >"$CONFIG" <<EOF
# The pam-otp demo's own sshd: 127.0.0.1 only, one user, password then code.
ListenAddress 127.0.0.1
Port $PORT
HostKey $RUN/ssh_host_ed25519_key
PidFile $RUN/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
AuthenticationMethods keyboard-interactive
PasswordAuthentication no
PubkeyAuthentication no
PermitRootLogin no
AllowUsers $NAME
PrintMotd no
UseDNS no
EOF
    # sshd names its PAM service after the program name it was started as.
    ln -s /usr/sbin/sshd "$RUN/$SERVICE"
    install -d -m 0755 /run/sshd
    local args=(-f "$CONFIG")
    if "$RUN/$SERVICE" -t "${args[@]}" -o "PAMServiceName=$SERVICE" 2>/dev/null; then
        args+=(-o "PAMServiceName=$SERVICE")
    fi
    "$RUN/$SERVICE" -t "${args[@]}" || fail "sshd -t refuses the demo configuration"
    "$RUN/$SERVICE" -D -e "${args[@]}" >"$RUN/sshd.log" 2>&1 </dev/null 8<&- 9<&- &
    local sshd_pid=$!
    for _ in $(seq 100); do
        grep -q "Server listening on 127.0.0.1 port $PORT" "$RUN/sshd.log" && break
        kill -0 "$sshd_pid" 2>/dev/null || fail "sshd did not start: $(cat "$RUN/sshd.log")"
        sleep 0.1
    done
    grep -q "Server listening" "$RUN/sshd.log" || fail "sshd is not listening: $(cat "$RUN/sshd.log")"

    cat <<EOF

==================================================================================
 pam-otp demo is up: a second sshd on 127.0.0.1:$PORT (your own sshd is untouched)

 In another terminal:      ssh -p $PORT $NAME@127.0.0.1
   Password:               $password
   Verification code:      the 6 digits your app shows for "pam-otp demo",
                           or: oathtool --totp -b $secret

 Each code works once; a wrong one counts towards the lockout (5 in a row).
 The user $NAME, its PAM file $PAM_FILE and the state exist only for this
 demo (a private mount namespace): your own sshd does not know the user.
 Host key (kept in $KEY_DIR for the next run):
   $(ssh-keygen -l -f "$RUN/ssh_host_ed25519_key")
 Press Ctrl-C here to stop: the user, its home, the PAM file, the sshd and the
 state all go.
==================================================================================
EOF

    # Last, so that whoever waits for this file finds the instructions already printed.
    if [ -n "$info_at" ]; then
        (umask 077 && printf 'user=%s\npassword=%s\nsecret=%s\nport=%s\nservice=%s\nrun=%s\n' \
            "$NAME" "$password" "$secret" "$PORT" "$SERVICE" "$RUN" >"$info_at.tmp")
        mv "$info_at.tmp" "$info_at"
    fi

    # Until Ctrl-C or SIGTERM (the trap above), or until sshd stops by itself.
    wait "$sshd_pid" || true
    fail "sshd stopped: $(tail -n 5 "$RUN/sshd.log")"
}

if [ "$INSIDE" = yes ]; then
    inside
else
    outside
fi
