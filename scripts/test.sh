#!/usr/bin/env bash
# The one test command: installs what the tests need (scripts/install-tools.sh), then runs every gate:
# rustfmt, clippy -D warnings, all Rust tests (unit, CLI, live tests against real bao 2.7.2 and HAProxy
# on loopback), and Nix parse/eval/deadnix checks of modules/ and generated nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
./scripts/install-tools.sh
export PATH="$root/.tools/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export VAULTNIX_BAO="$root/.tools/bao-2.7.2/bao"
export VAULTNIX_BAO_2_6="$root/.tools/bao-2.6.2/bao"
export VAULTNIX_BAO_OLD="$VAULTNIX_BAO_2_6"
export NIXPKGS_SUBSET="${NIXPKGS_SUBSET:-$root/../shared/nixpkgs-subset}"
[ -d "$NIXPKGS_SUBSET" ] || { echo "test.sh: nixpkgs-subset not found at $NIXPKGS_SUBSET" >&2; exit 1; }

step() { printf '\n=== %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --check
step "cargo clippy -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
step "ruff: VM test helpers (vm-tests/lib.py)"
.tools/ruff-0.17.6/bin/ruff check --isolated --select E,F,W --line-length 120 vm-tests/lib.py
step "cargo test"
cargo test --quiet -- --test-threads="${VAULTNIX_TEST_THREADS:-2}"
if [ -x tests/nix/eval.sh ]; then
  step "nix: parse, deadnix, evaluate modules and generated nodes"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  cargo run --quiet -- --quiet generate --out "$tmp/example"
  bash tests/nix/eval.sh "$tmp/example"
fi
