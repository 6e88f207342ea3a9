#!/bin/sh
# Certificates for pam-otp's fleet Redis (store = "redis"): a private CA, the server's
# certificate, and one client certificate per host. X.509 v3 with the extensions rustls
# requires (a v1 certificate from a bare `openssl x509 -req` is refused with
# "UnsupportedCertVersion"); EC P-256 keys, readable by root only.
#
#   make-certs.sh ca     DIR                  DIR/ca.crt, DIR/ca.key (keep ca.key offline)
#   make-certs.sh server DIR NAME SAN...      DIR/NAME.crt, DIR/NAME.key for Redis; each SAN
#                                             as DNS:redis.example.com or IP:10.0.0.5
#   make-certs.sh client DIR NAME             DIR/NAME.crt, DIR/NAME.key for one host
#
# Example (README, "Fleets"):
#   make-certs.sh ca /root/fleet-ca
#   make-certs.sh server /root/fleet-ca redis DNS:redis.example.com IP:10.0.0.5
#   make-certs.sh client /root/fleet-ca web1
# DAYS (default 825) is how long the server and client certificates last; the CA lasts
# ten years.
set -eu

usage() {
    cat >&2 <<'USAGE'
usage: make-certs.sh ca     DIR
       make-certs.sh server DIR NAME SAN...   (SAN: DNS:name or IP:address)
       make-certs.sh client DIR NAME
USAGE
    exit 2
}

[ $# -ge 2 ] || usage
what=$1
dir=$2
shift 2
days=${DAYS:-825}
umask 077
mkdir -p "$dir"
cd "$dir"

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
    chmod 600 "$1.key"
}

# Signs NAME.csr with the CA; $2 is the extension text (v3: basicConstraints, keyUsage,
# extendedKeyUsage, subjectAltName).
sign() {
    printf '%s\n' "$2" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days "$days" -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
    chmod 644 "$1.crt"
    echo "made $dir/$1.crt and $dir/$1.key"
}

case "$what" in
    ca)
        [ $# -eq 0 ] || usage
        [ ! -e ca.key ] || { echo "make-certs.sh: $dir/ca.key exists; not replaced" >&2; exit 1; }
        new_key ca
        openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=pam-otp fleet CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
        chmod 644 ca.crt
        echo "made $dir/ca.crt and $dir/ca.key (keep ca.key off the hosts)"
        ;;
    server)
        [ $# -ge 2 ] || usage
        name=$1
        shift
        sans=$(printf '%s,' "$@")
        new_key "$name"
        openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
        sign "$name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=${sans%,}"
        ;;
    client)
        [ $# -eq 1 ] || usage
        name=$1
        new_key "$name"
        openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
        sign "$name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
        ;;
    *)
        usage
        ;;
esac
