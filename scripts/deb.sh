#!/usr/bin/env bash
# The Debian package, built with dpkg-deb from the repository.
#
#   scripts/deb.sh build [--profile release|dev] [--bin PATH] [--out DIR]
#                        [--compress xz|gzip|none]
#       build rampart (cargo, --profile, default release) or take --bin,
#       generate the man pages and completions from it, and write
#       DIR/rampart_VERSION_ARCH.deb (DIR default: target/debian); prints
#       the .deb's path last.
#   scripts/deb.sh test DEB
#       as root: install DEB (dpkg -i), run /usr/bin/rampart --version,
#       systemd-analyze verify every installed unit, then purge it.
#   scripts/deb.sh ci
#       build (dev profile, which the test suite builds anyway) and test.
#
# Installs /usr/bin/rampart, man pages (rampart(1), rampart-check(1), ...),
# bash/zsh/fish completions, every contrib/*.service in /lib/systemd/system
# (not enabled: the site source has to be set first) and
# /etc/default/rampart-agent (a conffile).
#
# Why dpkg-deb and not cargo-deb: nothing to install or compile beyond the
# Debian tools already present (CI runs on a clean clone), and the man
# pages and completions come from the built binary itself, which cargo-deb
# would need a build script or a pre-step for anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=rampart

die() { echo "deb.sh: $*" >&2; exit 1; }

version() {
  sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1
}

# Shared-library dependencies of the binary (dpkg-shlibdeps when dpkg-dev
# is there, else what a Rust binary on glibc links).
shlibs() {
  local bin=$1 tmp out
  if command -v dpkg-shlibdeps >/dev/null; then
    tmp=$(mktemp -d)
    mkdir -p "$tmp/debian"
    printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$tmp/debian/control"
    if out=$(cd "$tmp" && dpkg-shlibdeps -O "$bin" 2>/dev/null); then
      rm -rf "$tmp"
      echo "${out#shlibs:Depends=}"
      return
    fi
    rm -rf "$tmp"
  fi
  echo "libc6, libgcc-s1"
}

build() {
  local profile=release bin="" out=target/debian compress=xz
  while [ $# -gt 0 ]; do
    case $1 in
      --profile) profile=$2; shift 2 ;;
      --bin) bin=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --compress) compress=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  if [ -z "$bin" ]; then
    cargo build --locked --profile "$profile" -p rampart-cli --bin rampart >&2
    case $profile in dev) bin=target/debug/rampart ;; *) bin=target/$profile/rampart ;; esac
  fi
  [ -x "$bin" ] || die "no binary at $bin"
  bin=$(realpath "$bin")
  local ver arch root deb
  ver=$(version)
  [ -n "$ver" ] || die "no version in Cargo.toml"
  arch=$(dpkg --print-architecture)
  mkdir -p "$out"
  out=$(realpath "$out")
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  chmod 0755 "$root"

  install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" "$root/lib/systemd/system" \
    "$root/etc/default" "$root/usr/share/doc/$PKG"

  install -m 0755 "$bin" "$root/usr/bin/rampart"
  # Debian ships stripped binaries (the debug info stays in target/).
  if command -v strip >/dev/null; then strip --strip-unneeded "$root/usr/bin/rampart"; fi

  "$bin" gen-man "$root/usr/share/man/man1"
  gzip -9n "$root"/usr/share/man/man1/*.1
  "$bin" completions bash >"$root/usr/share/bash-completion/completions/rampart"
  "$bin" completions zsh >"$root/usr/share/zsh/vendor-completions/_rampart"
  "$bin" completions fish >"$root/usr/share/fish/vendor_completions.d/rampart.fish"

  local units=(contrib/*.service)
  [ -e "${units[0]}" ] || die "no contrib/*.service"
  install -m 0644 "${units[@]}" "$root/lib/systemd/system/"
  install -m 0644 contrib/rampart-agent.default "$root/etc/default/rampart-agent"
  echo /etc/default/rampart-agent >"$root/DEBIAN/conffiles"

  install -m 0644 README.md "$root/usr/share/doc/$PKG/README.md"
  cat >"$root/usr/share/doc/$PKG/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rampart

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPY

  # Units are installed, not enabled or started: the agent needs its site
  # source in /etc/default/rampart-agent first.
  local script
  for script in postinst postrm; do
    cat >"$root/DEBIAN/$script" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload || true
fi
SH
    chmod 0755 "$root/DEBIAN/$script"
  done

  local size
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  cat >"$root/DEBIAN/control" <<CTRL
Package: $PKG
Version: $ver
Architecture: $arch
Maintainer: rampart developers <rampart@localhost>
Installed-Size: $size
Depends: $(shlibs "$root/usr/bin/rampart")
Recommends: nftables | iptables, ipset, wireguard-tools
Section: net
Priority: optional
Description: Proxmox-format firewalls: check, compile, simulate, apply
 rampart compiles a declarative site (site.toml and Proxmox .fw files) to
 nftables or iptables-restore, simulates packets, applies atomically with
 rollback, and runs an agent (rampart-agent.service) that keeps a node
 converged on its site, from a directory or etcd.
CTRL
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
     | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

  deb="$out/${PKG}_${ver}_${arch}.deb"
  dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$deb" >&2
  echo "$deb"
}

test_deb() {
  local deb=${1:?usage: deb.sh test DEB}
  [ "$(id -u)" = 0 ] || die "test needs root"
  dpkg-deb -I "$deb" >/dev/null
  if dpkg -s "$PKG" >/dev/null 2>&1; then
    die "$PKG is installed already; not touching it"
  fi
  # Purged on any exit, so the rest of the tests see no package.
  trap 'dpkg -P '"$PKG"' >/dev/null 2>&1 || true' EXIT
  dpkg -i "$deb"
  local v
  v=$(/usr/bin/rampart --version)
  echo "installed: $v"
  [ "$v" = "rampart $(version)" ] || die "/usr/bin/rampart --version said '$v'"
  # Documentation=man:rampart(1) is checked when man pages were installed
  # (a container's dpkg may be told to skip /usr/share/man).
  local man=yes
  [ -e /usr/share/man/man1/rampart.1.gz ] && command -v man >/dev/null || man=no
  local units
  mapfile -t units < <(dpkg -L "$PKG" | grep '^/lib/systemd/system/.*\.service$')
  [ ${#units[@]} -gt 0 ] || die "no units installed"
  echo "systemd-analyze verify --man=$man ${units[*]}"
  # verify exits 0 on a line it ignores ("Failed to parse sec value,
  # ignoring"): anything it says is a failure here.
  local said
  said=$(systemd-analyze verify --man="$man" "${units[@]}" 2>&1) || die "systemd-analyze verify: $said"
  [ -z "$said" ] || die "systemd-analyze verify: $said"
  [ -f /etc/default/rampart-agent ] || die "no /etc/default/rampart-agent"
  dpkg -P "$PKG"
  trap - EXIT
  [ ! -e /usr/bin/rampart ] || die "/usr/bin/rampart left after purge"
  [ ! -e /etc/default/rampart-agent ] || die "/etc/default/rampart-agent left after purge"
  echo "package installed, checked and purged"
}

case ${1:-} in
  build) shift; build "$@" ;;
  test) shift; test_deb "$@" ;;
  ci)
    deb=$(build --profile dev)
    test_deb "$deb"
    ;;
  *) die "usage: deb.sh build|test DEB|ci" ;;
esac
