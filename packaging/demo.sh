#!/usr/bin/env bash
# `make demo`: pam-otp working on this machine without touching its sshd or PAM files.
#
# Makes a throw-away user with a password, enrolls it with otp-setup (QR code for a
# phone app, secret for oathtool), writes a PAM service of its own, and starts a second
# sshd on 127.0.0.1:PORT (own config, host key, pid file) that asks for the password and
# then the code. Stays up until Ctrl-C (or SIGTERM), then removes everything it made:
# the sshd and the user's sessions, the user and home, the PAM file, the state.
# Leftovers of an earlier run that crashed are removed first.
#
#   packaging/demo.sh [--port 2222] [--name otpdemo] [--bin-dir target/release]
#                     [--info FILE]
#
# --name: the user (and, as NAME-sshd, the PAM service); --bin-dir: where the built
# libpam_otp.so and otp-setup are; --info FILE: also write user, password, secret and
# port there (for scripts and tests) once the sshd listens.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=2222
NAME=otpdemo
BIN_DIR=${CARGO_TARGET_DIR:-target}/release
INFO=
while [ $# -gt 0 ]; do
    case "$1" in
    --port) PORT=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --info) INFO=$2; shift 2 ;;
    *) echo "usage: $0 [--port N] [--name USER] [--bin-dir DIR] [--info FILE]" >&2; exit 2 ;;
    esac
done

fail() {
    echo "demo: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (it makes a user and starts an sshd): sudo make demo"
[[ "$NAME" =~ ^[a-z][a-z0-9-]{0,24}$ ]] || fail "--name must be a plain lower-case user name"
[[ "$PORT" =~ ^[0-9]+$ ]] || fail "--port must be a number"
for tool in /usr/sbin/sshd ssh-keygen useradd userdel chpasswd runuser; do
    command -v "$tool" >/dev/null || fail "$tool is missing: bash packaging/deps.sh demo"
done
for built in libpam_otp.so otp-setup; do
    [ -f "$BIN_DIR/$built" ] || fail "$BIN_DIR/$built is missing: cargo build --release first"
done

SERVICE=$NAME-sshd
PAM_FILE=/etc/pam.d/$SERVICE
RUN=/run/pam-otp-demo/$NAME
CONFIG=$RUN/sshd_config

# Every process started with this demo's sshd configuration: the listener and the
# sshd of each connection (they re-execute with the same arguments).
demo_sshd_pids() {
    pgrep -f -- "-f $CONFIG( |\$)" || true
}

cleanup() {
    local pids
    pids=$(demo_sshd_pids)
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
    if getent passwd "$NAME" >/dev/null; then
        # Logged-in sessions of the demo user go too, or userdel refuses.
        pkill -KILL -u "$NAME" 2>/dev/null || true
        sleep 0.2
        userdel -r -f "$NAME" >/dev/null 2>&1 || userdel -f "$NAME" >/dev/null 2>&1 || true
    fi
    pids=$(demo_sshd_pids)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    rm -f "$PAM_FILE"
    rm -rf "$RUN"
    rmdir /run/pam-otp-demo 2>/dev/null || true
    [ -z "$INFO" ] || rm -f "$INFO"
}

leftovers() {
    getent passwd "$NAME" >/dev/null || [ -e "$PAM_FILE" ] || [ -e "$RUN" ] || [ -n "$(demo_sshd_pids)" ]
}

if leftovers; then
    echo "demo: removing what an earlier demo left behind (user $NAME, $PAM_FILE, $RUN)"
    cleanup
fi
# The demo user must be ours: never take over an account that exists for other reasons.
getent passwd "$NAME" >/dev/null && fail "user $NAME exists and could not be removed"

trap cleanup EXIT
trap 'echo; echo "demo: stopping and removing everything"; exit 0' INT
trap 'exit 143' TERM

mkdir -p -m 0755 /run/pam-otp-demo "$RUN"
chmod 0755 "$RUN"
# Copies any user can run (the build tree may be in a private home).
install -m 0755 "$BIN_DIR/otp-setup" "$RUN/otp-setup"
install -m 0644 "$BIN_DIR/libpam_otp.so" "$RUN/pam_otp.so"
install -d -m 0700 "$RUN/state"

echo "demo: user $NAME (removed again when the demo stops)"
useradd -m -s /bin/bash -c "pam-otp demo (throw-away)" "$NAME"
PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 12)
echo "$NAME:$PASSWORD" | chpasswd

echo "demo: enrolling $NAME with otp-setup; scan the QR code with your phone's app:"
(cd / && runuser -u "$NAME" -- "$RUN/otp-setup" --no-confirm --issuer "pam-otp demo" \
    --label "$NAME@127.0.0.1:$PORT")
SECRET=$(sed -n 's/^secret = "\(.*\)"$/\1/p' "$(getent passwd "$NAME" | cut -d: -f6)/.otp.toml")
[ -n "$SECRET" ] || fail "otp-setup wrote no secret"

# The policy: the shipped file, with this demo's own state directory.
sed "s|^# state_dir = .*|state_dir = \"$RUN/state\"|" config/pam_otp.toml >"$RUN/pam_otp.toml"
chmod 0644 "$RUN/pam_otp.toml"
# The PAM service: the shipped "password, then code" file, naming this demo's module.
sed "s|pam_otp\.so|$RUN/pam_otp.so policy=$RUN/pam_otp.toml|" config/pam.d/sshd-password-otp >"$PAM_FILE"
chmod 0644 "$PAM_FILE"

ssh-keygen -q -t ed25519 -N "" -C "pam-otp demo" -f "$RUN/ssh_host_ed25519_key"
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
[ -d /run/sshd ] || install -d -m 0755 /run/sshd
args=(-f "$CONFIG")
if "$RUN/$SERVICE" -t "${args[@]}" -o "PAMServiceName=$SERVICE" 2>/dev/null; then
    args+=(-o "PAMServiceName=$SERVICE")
fi
"$RUN/$SERVICE" -t "${args[@]}" || fail "sshd -t refuses the demo configuration"
"$RUN/$SERVICE" -D -e "${args[@]}" >"$RUN/sshd.log" 2>&1 </dev/null &
SSHD_PID=$!
for _ in $(seq 100); do
    grep -q "Server listening on 127.0.0.1 port $PORT" "$RUN/sshd.log" && break
    kill -0 "$SSHD_PID" 2>/dev/null || fail "sshd did not start: $(cat "$RUN/sshd.log")"
    sleep 0.1
done
grep -q "Server listening" "$RUN/sshd.log" || fail "sshd is not listening: $(cat "$RUN/sshd.log")"

cat <<EOF

==================================================================================
 pam-otp demo is up: a second sshd on 127.0.0.1:$PORT (your own sshd is untouched)

 In another terminal:      ssh -p $PORT $NAME@127.0.0.1
   Password:               $PASSWORD
   Verification code:      the 6 digits your app shows for "pam-otp demo",
                           or: oathtool --totp -b $SECRET

 Each code works once; a wrong one counts towards the lockout (5 in a row).
 Its PAM file is $PAM_FILE; state is in $RUN/state.
 Press Ctrl-C here to stop: the user, its home, the PAM file, the sshd and the
 state are all removed.
==================================================================================
EOF

# Last, so that whoever waits for this file finds the instructions already printed.
if [ -n "$INFO" ]; then
    printf 'user=%s\npassword=%s\nsecret=%s\nport=%s\nservice=%s\nrun=%s\n' \
        "$NAME" "$PASSWORD" "$SECRET" "$PORT" "$SERVICE" "$RUN" >"$INFO.tmp"
    chmod 0600 "$INFO.tmp"
    mv "$INFO.tmp" "$INFO"
fi

# Until Ctrl-C (the traps above clean up), or until sshd stops by itself.
wait "$SSHD_PID" || true
fail "sshd stopped: $(tail -n 5 "$RUN/sshd.log")"
