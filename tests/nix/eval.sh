#!/usr/bin/env bash
# Evaluation tests of vaultnix's Nix layer; needs only nix-instantiate (no nixpkgs, no builds).
#
#   tests/nix/eval.sh [OUT_DIR]
#
# OUT_DIR is a `vaultnix generate` output directory or its flake/ (default: docs/contract). The NixOS option
# declarations of services.openbao/vault/haproxy/tailscale and networking.wireguard come from
# the real upstream modules in the nixpkgs-subset fixture ($NIXPKGS_SUBSET, default
# ../shared/nixpkgs-subset next to the repository). Checks:
#   1. every .nix file of the repository and of OUT_DIR parses
#   2. deadnix --fail finds no unused bindings
#   3. every module concern evaluates on its own (tests/nix/cases.nix)
#   4. every machine of OUT_DIR evaluates: server JSON deployed unchanged, secrets outside the
#      store, cluster port on the overlay interface only, no failed assertions (check-node.nix)
#   5. the final haproxy configuration (module prefix + rendered file) passes `haproxy -c`
#   6. lib.mkCluster maps cluster.json to configurations and images (mk-cluster.nix)
#   7. negative cases (tests/nix/negative/*.nix) fail with the expected message
# The last line is "N passed, M failed"; the exit status is non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
subset=$(cd "${NIXPKGS_SUBSET:-$repo/../shared/nixpkgs-subset}" && pwd)
out=$(cd "${1:-$repo/docs/contract}" && pwd)
# A whole output directory (DIR/flake/ + DIR/secrets/) is evaluated through its flake tree: only
# DIR/flake/ is what Nix sees.
if [ -f "$out/flake/flake.nix" ]; then out="$out/flake"; fi
PATH="$repo/.tools/bin:$PATH"
# Evaluation needs no build users: Debian's nix defaults to `build-users-group = nixbld`, a group a
# fresh machine does not have (Nix then warns on stderr). Say what evaluation needs instead of
# depending on machine state, and never parse a stream stderr was merged into.
export NIX_CONFIG="${NIX_CONFIG:+$NIX_CONFIG
}build-users-group ="

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() {
  failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -n 25 | sed 's/^/      /'; fi
}
section() { printf '\n== %s\n' "$*"; }

errlog=$(mktemp); trap 'rm -f "$errlog"' EXIT
# nix-instantiate --eval of an expression; prints JSON on stdout, stderr goes to $errlog (shown only
# when the evaluation fails).
nixeval() { nix-instantiate --eval --strict --json --read-write-mode -E "$1" 2>"$errlog"; }

# Runs an expression returning [ { name; ok; detail; } ] and records every check.
run_checks() { # run_checks <label> <expr>
  local json ok name detail
  if ! json=$(nixeval "$2"); then
    fail "$1: evaluation" "$(cat "$errlog")"
    return
  fi
  while IFS=$'\t' read -r ok name detail; do
    if [ "$ok" = true ]; then pass "$name"; else fail "$name" "$detail"; fi
  done < <(printf '%s' "$json" | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    d = "" if c["ok"] else json.dumps(c["detail"])[:1500]
    print("true" if c["ok"] else "false", c["name"], d, sep="\t")
')
}

nix_files() { # every .nix file of the repository (tracked or not) and of the output directory
  { git -C "$repo" ls-files --cached --others --exclude-standard -- '*.nix'; } | sed "s#^#$repo/#"
  find "$out" -name '*.nix' -not -path "$repo/*"
}
mapfile -t files < <(nix_files | sort -u | while read -r f; do [ -f "$f" ] && echo "$f"; done)

section "parse (${#files[@]} files)"
for f in "${files[@]}"; do
  if msg=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then pass "parse ${f#"$repo"/}"; else fail "parse ${f#"$repo"/}" "$msg"; fi
done

section "deadnix"
if command -v deadnix >/dev/null; then
  if msg=$(deadnix --fail "${files[@]}" 2>&1); then pass "deadnix: no unused bindings"; else fail "deadnix: unused bindings" "$msg"; fi
else
  fail "deadnix not found (run scripts/install-tools.sh or cargo install --root .tools deadnix)"
fi

section "modules, one concern at a time (tests/nix/cases.nix)"
for c in $(nixeval "builtins.attrNames (import $here/cases.nix)" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)))'); do
  run_checks "case $c" "map (x: x // { name = \"case $c: \" + x.name; }) (import $here/check-node.nix { subset = $subset; modules = (import $here/cases.nix).\"$c\"; })"
done

section "generated machines in $out"
nodes=()
for f in "$out"/nodes/*.nix; do nodes+=("$f"); done
[ ${#nodes[@]} -gt 0 ] || fail "no nodes/*.nix in $out"
for f in "${nodes[@]}"; do
  run_checks "$(basename "$f")" "import $here/check-node.nix { subset = $subset; modules = [ $f ]; }"
done

section "haproxy -c on the final configuration (module's global section + rendered file)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp" "$errlog"' EXIT
for f in "${nodes[@]}"; do
  expr="let r = import $here/eval-node.nix { subset = $subset; modules = [ $f ]; }; in if r.config.vaultnix.loadBalancer.enable then r.config.environment.etc.\"haproxy.cfg\".source.text else null"
  if ! text=$(nixeval "$expr"); then fail "haproxy config of $(basename "$f")" "$(cat "$errlog")"; continue; fi
  [ "$text" = null ] && continue
  name=$(basename "$f" .nix)
  # The CA lives in /etc/vaultnix on the host; point the check at the generated one.
  printf '%s' "$text" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' |
    sed "s#/etc/vaultnix/ca.crt#$out/pki/ca.crt#g" >"$tmp/$name.cfg"
  if ! command -v haproxy >/dev/null; then
    fail "haproxy -c $name: haproxy not installed"
  elif msg=$(haproxy -c -f "$tmp/$name.cfg" 2>&1); then
    pass "haproxy -c: final configuration of $name is valid"
  else
    fail "haproxy -c: final configuration of $name" "$msg"
  fi
done

section "lib.mkCluster on $out/cluster.json"
run_checks "mkCluster" "import $here/mk-cluster.nix { subset = $subset; src = $out; }"

section "negative cases (must fail)"
base="$repo/docs/contract/nodes/vault-1.nix"
for f in "$here"/negative/*.nix; do
  expect=$(sed -n 's/^# expect: //p' "$f" | head -n1)
  expr="let r = import $here/eval-node.nix { subset = $subset; modules = [ $base $f ]; }; in builtins.deepSeq r.config.vaultnix.server (builtins.deepSeq r.config.vaultnix.overlay r.checkedConfig.services.openbao.enable)"
  if msg=$(nixeval "$expr"); then
    fail "negative $(basename "$f"): evaluation succeeded" "$msg"
  elif msg=$(cat "$errlog") && grep -qF -- "$expect" <<<"$msg"; then
    pass "negative $(basename "$f"): fails with \"$expect\""
  else
    fail "negative $(basename "$f"): failed without \"$expect\"" "$msg"
  fi
done

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
