#!/usr/bin/env bash
# Development certificates for the sandbox MySQL servers and the relay's admin port.
#
# Usage: certs/make-certs.sh [--force]
# Writes into certs/out/ (gitignored). A no-op when every file exists, unless --force.
# See certs/README.md for what each file is and how to replace them in production.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$HERE/out
DAYS=3650
FORCE=0
case ${1:-} in
    "") ;;
    --force) FORCE=1 ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

FILES=(ca.pem ca-key.pem mysql-server.pem mysql-server-key.pem relay.pem relay-key.pem
    client.pem client-key.pem other-ca.pem other-ca-key.pem
    mysql-server-ip.pem mysql-server-ip-key.pem)

all_present() {
    local f
    for f in "${FILES[@]}"; do [[ -s $OUT/$f ]] || return 1; done
}

if ((!FORCE)) && all_present; then
    exit 0
fi
command -v openssl >/dev/null || { echo "make-certs: openssl not found" >&2; exit 1; }

mkdir -p "$OUT"
# Build in a temporary directory and move into place at the end, so an
# interrupted run never leaves a half-made set that looks complete.
TMP=$(mktemp -d "$OUT/.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

ca() { # name subject
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$DAYS" \
        -keyout "$TMP/$1-key.pem" -out "$TMP/$1.pem" -subj "$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
}

leaf() { # name subject extendedKeyUsage [subjectAltName]
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$TMP/$1-key.pem" \
        -out "$TMP/$1.csr" -subj "$2" 2>/dev/null
    cat >"$TMP/$1.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$3
subjectAltName=${4:-DNS:localhost,IP:127.0.0.1}
EXT
    openssl x509 -req -in "$TMP/$1.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca-key.pem" \
        -CAcreateserial -days "$DAYS" -sha256 -extfile "$TMP/$1.ext" -out "$TMP/$1.pem" 2>/dev/null
    rm -f "$TMP/$1.csr" "$TMP/$1.ext"
}

ca ca "/CN=gtid-relay dev CA"
leaf mysql-server "/CN=localhost" serverAuth
leaf relay "/CN=localhost" serverAuth
leaf client "/CN=gtid-relay client" clientAuth
# Names only the address: VERIFY_IDENTITY to "localhost" must refuse it.
leaf mysql-server-ip "/CN=127.0.0.1" serverAuth IP:127.0.0.1
ca other-ca "/CN=unrelated dev CA"

# mysqld runs as root in the sandbox chroot, but keys stay private anyway.
chmod 600 "$TMP"/*-key.pem
chmod 644 "$TMP"/ca.pem "$TMP"/mysql-server.pem "$TMP"/mysql-server-ip.pem "$TMP"/relay.pem \
    "$TMP"/client.pem "$TMP"/other-ca.pem
for f in "${FILES[@]}"; do mv -f "$TMP/$f" "$OUT/$f"; done
echo "make-certs: wrote ${FILES[*]} into $OUT"
