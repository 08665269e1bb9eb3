#!/usr/bin/env bash
# The whole test suite: provisions MySQL 9.7 (deploy/sandbox.sh install), then
# runs lints, unit tests and the protocol tests against real servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) != 0 ]]; then
    echo "deploy/test.sh: the MySQL sandbox needs root (debootstrap, chroot); run it as root" >&2
    exit 1
fi
deploy/sandbox.sh install
# systemd-analyze checks deploy/gtid-relay.service.
if ! command -v systemd-analyze >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
[[ -x certs/make-certs.sh ]] && certs/make-certs.sh >/dev/null

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked "$@"
# The Debian package: built, installed with dpkg, checked and purged.
deploy/package.sh --check >/dev/null
