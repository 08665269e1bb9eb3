#!/usr/bin/env bash
# Build the Debian package: the release binary, the hardened systemd unit, a
# commented configuration skeleton under /etc/gtid-relay, a system user made
# at install, the monitoring rules and dashboard, the docs. The service is
# neither enabled nor started: the skeleton names no master.
#
# Usage: deploy/package.sh           build target/debian/gtid-relay_<version>_<arch>.deb, print its path
#        deploy/package.sh --check   also install it with dpkg, check the installed binary and
#                                    unit (systemd-analyze verify), purge it, and check nothing is left
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "package: $*" >&2; exit 1; }
log() { echo "package: $*" >&2; }

check=0
case ${1:-} in
    "") ;;
    --check) check=1 ;;
    *) die "usage: deploy/package.sh [--check]" ;;
esac
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (Debian's dpkg package)"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
[[ -n $version ]] || die "no version in Cargo.toml"

cargo build --release --locked --bin gtid-relay >&2
bin=target/release/gtid-relay

# The oldest glibc the binary runs on: the highest GLIBC_x.y symbol version it needs.
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
[[ -n $glibc ]] || die "cannot read the glibc versions $bin needs (objdump -T)"

stage=target/debian/stage
rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/systemd/system" \
    "$stage/etc/gtid-relay/tls" "$stage/usr/share/doc/gtid-relay" "$stage/usr/share/gtid-relay/monitoring"
install -m 0755 "$bin" "$stage/usr/bin/gtid-relay"
strip --strip-unneeded "$stage/usr/bin/gtid-relay"
# The unit of deploy/, with the packaged binary's path.
sed -e 's|/usr/local/bin/gtid-relay|/usr/bin/gtid-relay|g' deploy/gtid-relay.service \
    >"$stage/usr/lib/systemd/system/gtid-relay.service"
chmod 0644 "$stage/usr/lib/systemd/system/gtid-relay.service"
install -m 0640 deploy/debian/relay.toml "$stage/etc/gtid-relay/relay.toml"
install -m 0600 deploy/debian/relay.env "$stage/etc/gtid-relay/relay.env"
install -m 0644 README.md docs/*.md "$stage/usr/share/doc/gtid-relay/"
install -m 0644 deploy/monitoring/gtid-relay.rules.yml deploy/monitoring/gtid-relay.rules.test.yml \
    deploy/monitoring/gtid-relay.dashboard.json "$stage/usr/share/gtid-relay/monitoring/"
cat >"$stage/usr/share/doc/gtid-relay/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: gtid-relay
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
printf '/etc/gtid-relay/relay.toml\n/etc/gtid-relay/relay.env\n' >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: gtid-relay
Version: $version
Architecture: $arch
Maintainer: gtid-relay developers <gtid-relay@localhost>
Installed-Size: $size
Depends: libc6 (>= $glibc), passwd
Section: database
Priority: optional
Description: active-active MySQL replication keeping every transaction's original GTID
 gtid-relay connects to each MySQL master as a replica and relays each
 transaction to the masters that lack it under its original GTID, exactly
 once. It answers SHOW REPLICA STATUS and START/STOP REPLICA on an admin port
 and exports Prometheus metrics; alert rules and a Grafana dashboard are in
 /usr/share/gtid-relay/monitoring.
EOF
deb=target/debian/gtid-relay_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$deb" >&2
rm -rf "$stage"
log "built $deb"
echo "$deb"

((check)) || exit 0

# --check: install, look, purge, look again. Refuses to touch a machine that
# already has the package (an operator's installation).
[[ $(id -u) == 0 ]] || die "--check installs the package: run it as root"
if dpkg-query -W -f='${Status}' gtid-relay 2>/dev/null | grep -q 'ok installed'; then
    die "gtid-relay is already installed here; --check only runs on a machine without it"
fi
command -v systemd-analyze >/dev/null || die "systemd-analyze is missing (Debian's systemd package)"
dpkg -i "$deb" >&2 || die "dpkg -i $deb failed"
fail() { dpkg -P gtid-relay >/dev/null 2>&1 || true; die "$*"; }
/usr/bin/gtid-relay --version | grep -qx "gtid-relay $version" || fail "gtid-relay --version is not $version"
systemd-analyze verify /usr/lib/systemd/system/gtid-relay.service >&2 ||
    fail "systemd-analyze verify rejects the installed unit"
getent passwd gtid-relay >/dev/null || fail "the gtid-relay user was not created"
[[ $(stat -c '%U:%G %a' /etc/gtid-relay/relay.toml) == "root:gtid-relay 640" ]] ||
    fail "/etc/gtid-relay/relay.toml is $(stat -c '%U:%G %a' /etc/gtid-relay/relay.toml), want root:gtid-relay 640"
[[ $(stat -c '%U:%G %a' /etc/gtid-relay/relay.env) == "root:root 600" ]] ||
    fail "/etc/gtid-relay/relay.env is not root:root 600"
[[ ! -e /etc/systemd/system/multi-user.target.wants/gtid-relay.service ]] ||
    fail "the package enabled the service"
# The skeleton names no master: `check` says so instead of starting anything.
if out=$(/usr/bin/gtid-relay check --config /etc/gtid-relay/relay.toml 2>&1); then
    fail "gtid-relay check accepted the empty skeleton: $out"
fi
grep -q 'relay.toml' <<<"$out" || fail "gtid-relay check on the skeleton does not name the file: $out"
dpkg -P gtid-relay >&2 || die "dpkg -P gtid-relay failed"
for path in /usr/bin/gtid-relay /usr/lib/systemd/system/gtid-relay.service /etc/gtid-relay \
    /usr/share/doc/gtid-relay /usr/share/gtid-relay; do
    [[ ! -e $path ]] || die "$path is left after dpkg -P"
done
! getent passwd gtid-relay >/dev/null || die "the gtid-relay user is left after dpkg -P"
log "checked: installs, --version $version, unit verified, user made, purges cleanly"
