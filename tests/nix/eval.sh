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
#      store, cluster port on the overlay interface only, no failed assertions, every defined
#      visible option deep-forced (check-node.nix; removed-option declarations and options
#      without a definition are never forced)
#   5. the same with the machine's provider profile (images/<provider>.nix) on the machine's
#      system (x86_64 and aarch64); a profile importing an upstream module the fixture lacks
#      is reported SKIP with the reason (provider.nix)
#   6. the final haproxy configuration (module prefix + rendered file) passes `haproxy -c`
#   7. lib.mkCluster maps cluster.json to configurations and images (mk-cluster.nix)
#   8. units: ordering only on units that exist (also with images/oracle.nix, i.e. networkd),
#      no duplicate upstream serviceConfig keys, engine version check, single node without
#      overlay, the flake's formatter (units.nix)
#   9. negative cases (tests/nix/negative/*.nix) fail with the expected message, and a
#      defined value that throws fails "config evaluates" (self-check)
#  10. with VAULTNIX_VM_GEN="cluster=DIR wireguard=DIR" (generated for the VM tests' specs): every
#      machine of those VM tests evaluates with vaultnix's modules, assertions passing
#      (vm-machines.nix; tier a evaluates the VM tests themselves in `nix flake check`)
# The last line is "N passed, M failed" (", K skipped" when K > 0); the exit status is
# non-zero on any failure. stderr of Nix never reaches what is parsed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
which_tier=false
if [ "${1:-}" = --which-tier ]; then which_tier=true; shift; fi
out=$(cd "${1:-$repo/docs/contract}" && pwd)
# A whole output directory (DIR/flake/ + DIR/secrets/) is evaluated through its flake tree: only
# DIR/flake/ is what Nix sees.
if [ -f "$out/flake/flake.nix" ]; then out="$out/flake"; fi
PATH="$repo/.tools/bin:$PATH"
subset_dir=${NIXPKGS_SUBSET:-$repo/../shared/nixpkgs-subset}

# ---- which evaluation tier runs here ----------------------------------------------------------
#   flake   (a) Nix >= 2.18 (flakes): real nixpkgs, `nix flake check --no-build` + drvPaths
#   subset  (b) the nixpkgs-subset fixture ($NIXPKGS_SUBSET or ../shared/nixpkgs-subset)
#   none    (c) neither: parse + deadnix only, evaluation reported SKIPPED
# NIX_TIER=flake|subset|none forces one (an unusable forced tier is a failure, not a fallback);
# `eval.sh --which-tier [OUT]` prints the choice and exits.
nix_version() { # "2.24.9" of `nix --version`, or nothing
  command -v nix >/dev/null || return 0
  nix --version 2>/dev/null | sed -n 's/^nix (Nix) \([0-9][0-9.]*\).*/\1/p' | head -n1
}
version_at_least() { # version_at_least <have> <want>: numeric, per component
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -t. -k1,1n -k2,2n -k3,3n | head -n1)" = "$2" ]
}
nixv=$(nix_version)
flake_ok=false
if [ -n "$nixv" ] && version_at_least "$nixv" 2.18; then flake_ok=true; fi
subset_ok=false
if [ -f "$subset_dir/eval.nix" ]; then subset_ok=true; fi
tier_problem=
case ${NIX_TIER:-auto} in
  auto)
    if $flake_ok; then
      tier=flake tier_reason="nix $nixv >= 2.18 found (flakes): real nixpkgs"
    elif $subset_ok; then
      tier=subset tier_reason="nix ${nixv:-not found} < 2.18; nixpkgs-subset fixture found at $subset_dir"
    else
      tier=none tier_reason="no Nix >= 2.18 (found: ${nixv:-none}) and no nixpkgs-subset fixture at $subset_dir"
    fi
    ;;
  flake)
    tier=flake tier_reason="forced by NIX_TIER=flake"
    $flake_ok || tier_problem="NIX_TIER=flake needs Nix >= 2.18 (found: ${nixv:-none})"
    ;;
  subset)
    tier=subset tier_reason="forced by NIX_TIER=subset ($subset_dir)"
    $subset_ok || tier_problem="NIX_TIER=subset: no nixpkgs-subset fixture at $subset_dir (set NIXPKGS_SUBSET)"
    ;;
  none)
    tier=none tier_reason="forced by NIX_TIER=none"
    ;;
  *)
    tier=none tier_reason=
    tier_problem="NIX_TIER=${NIX_TIER} is none of auto, flake, subset, none"
    ;;
esac
case $tier in
  flake) tier_label="tier (a) flake" ;;
  subset) tier_label="tier (b) nixpkgs-subset" ;;
  none) tier_label="tier (c) parse + deadnix only" ;;
esac
if $which_tier; then
  printf 'nix evaluation: %s: %s\n' "$tier_label" "$tier_reason"
  [ -z "$tier_problem" ] || { printf 'error: %s\n' "$tier_problem"; exit 1; }
  exit 0
fi
if [ "$tier" = subset ] && [ -z "$tier_problem" ]; then subset=$(cd "$subset_dir" && pwd); fi
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
skipped=0
# A check that cannot run here: counted, said loudly with the reason, never a pass.
skip() { skipped=$((skipped + 1)); printf 'SKIP  %s\n      %s\n' "$1" "$2"; }
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

# machines <field>...: one tab-separated line per machine of $out/cluster.json
machines() {
  python3 -c '
import json, sys
for m in json.load(open(sys.argv[1]))["machines"]:
    print(*(m[f] for f in sys.argv[2:]), sep="\t")
' "$out/cluster.json" "$@"
}

nix_files() { # every .nix file of the repository (tracked or not) and of the output directory
  { git -C "$repo" ls-files --cached --others --exclude-standard -- '*.nix'; } | sed "s#^#$repo/#"
  find "$out" -name '*.nix' -not -path "$repo/*"
}
mapfile -t files < <(nix_files | sort -u | while read -r f; do [ -f "$f" ] && echo "$f"; done)

section "nix evaluation: $tier_label"
printf '%s\n' "$tier_reason"
if [ -n "$tier_problem" ]; then fail "$tier_problem"; tier=broken; fi

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

# ---- tier (b): the nixpkgs-subset fixture ---------------------------------------------------
tier_subset() {
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

  section "generated machines with their provider profile (images/<provider>.nix), on their system"
  # As lib.mkCluster assembles them: vaultnix's modules + the provider profile + nodes/<machine>.nix
  # + the machine's hostPlatform, evaluated for the machine's system (x86_64 and aarch64).
  while IFS=$'\t' read -r name provider system; do
    if ! missing=$(nixeval "(import $here/provider.nix { subset = $subset; provider = \"$provider\"; }).missing"); then
      fail "$name: provider profile images/$provider.nix" "$(cat "$errlog")"
      continue
    fi
    if [ "$missing" != "[]" ]; then
      skip "$name with the $provider profile on $system" \
        "images/$provider.nix imports $missing, which the nixpkgs-subset fixture does not carry (tier a evaluates it against real nixpkgs)"
      continue
    fi
    label="$name with the $provider profile on $system"
    run_checks "$label" "map (x: x // { name = \"$provider profile, $system: \" + x.name; }) (import $here/check-node.nix { subset = $subset; system = \"$system\"; modules = (import $here/provider.nix { subset = $subset; provider = \"$provider\"; }).modules ++ [ $out/nodes/$name.nix { nixpkgs.hostPlatform = \"$system\"; system.stateVersion = \"26.05\"; } ]; })"
  done < <(machines name provider system)

  section "haproxy -c on the final configuration (module's global section + rendered file)"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp" "$errlog"' EXIT
  for f in "${nodes[@]}"; do
    expr="let r = import $here/eval-node.nix { subset = $subset; modules = [ $f ]; }; in if r.config.vaultnix.loadBalancer.enable then r.config.environment.etc.\"haproxy.cfg\".source.text else null"
    if ! text=$(nixeval "$expr"); then fail "haproxy config of $(basename "$f")" "$(cat "$errlog")"; continue; fi
    [ "$text" = null ] && continue
    name=$(basename "$f" .nix)
    # The CA lives in /etc/vaultnix on the host; point the check at the generated one. The hold Lua
    # file is taken from where the module installs it (/etc/haproxy/vaultnix-hold.lua must exist there).
    lua_expr="let r = import $here/eval-node.nix { subset = $subset; modules = [ $f ]; }; in toString r.config.environment.etc.\"haproxy/vaultnix-hold.lua\".source"
    if ! lua=$(nixeval "$lua_expr"); then fail "hold.lua of $(basename "$f") not installed as /etc/haproxy/vaultnix-hold.lua" "$(cat "$errlog")"; continue; fi
    lua=$(printf '%s' "$lua" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))')
    # Terminate mode (load_balancer.mode): the certificate + key are installed from the host's
    # secrets dir, which Nix never sees, into the unit's RuntimeDirectory before every start and
    # every reload (so a reload serves a renewed certificate); the check gets a throwaway pair in
    # their place. The unit's first ExecStartPre and first ExecReload must be that install (as
    # root, 0600, HAProxy's user), before services.haproxy's `haproxy -c`, which loads the file.
    pem=/run/haproxy/vaultnix-lb.pem
    if printf '%s' "$text" | grep -q "crt $pem"; then
      # One evaluation of the LB: [ got want ].
      pair_expr="let r = import $here/eval-node.nix { subset = $subset; modules = [ $f ]; }; s = r.config.systemd.services.haproxy.serviceConfig; h = r.config.services.haproxy; i = \"+\" + r.pkgs.coreutils + \"/bin/install -m 0600 -o \" + h.user + \" -g \" + h.group + \" \" + r.config.vaultnix.loadBalancer.tlsPemFile + \" $pem\"; in map builtins.toJSON [ [ (builtins.head s.ExecStartPre) (builtins.head s.ExecReload) (s.LoadCredential or null) (builtins.length s.ExecReload) ] [ i i null 4 ] ]"
      got= want=
      if pair=$(nixeval "$pair_expr"); then
        got=$(printf '%s' "$pair" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0])')
        want=$(printf '%s' "$pair" | python3 -c 'import json,sys; print(json.load(sys.stdin)[1])')
      fi
      if [ -n "$got" ] && [ "$got" = "$want" ]; then
        pass "$name: the LB certificate + key are installed into $pem before every start and every reload"
      else
        fail "$name: the configuration binds crt $pem but the unit's [first ExecStartPre, first ExecReload, LoadCredential, #ExecReload] are ${got:-?} (want ${want:-?})" "$(cat "$errlog")"
      fi
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=check \
        -keyout "$tmp/lb.key" -out "$tmp/lb.crt" 2>/dev/null
      cat "$tmp/lb.crt" "$tmp/lb.key" >"$tmp/lb.pem"
    fi
    printf '%s' "$text" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' |
      sed -e "s#/etc/vaultnix/ca.crt#$out/pki/ca.crt#g" -e "s#/etc/haproxy/vaultnix-hold.lua#$lua#g" \
        -e "s#$pem#$tmp/lb.pem#g" >"$tmp/$name.cfg"
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

  section "units, upstream keys, engine version, single node, formatter (tests/nix/units.nix)"
  run_checks "units" "import $here/units.nix { subset = $subset; contract = $repo/docs/contract; }"

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

  # VAULTNIX_VM_GEN="cluster=DIR wireguard=DIR": what `vaultnix generate` wrote for each VM test's
  # spec; every machine of vm-tests/<test>.nix (defaults + its module, as runNixOSTest builds it)
  # must evaluate with vaultnix's modules and pass their assertions (tests/nix/vm-machines.nix).
  if [ -n "${VAULTNIX_VM_GEN:-}" ]; then
    section "VM test machines (vm-tests/*.nix) with vaultnix's modules"
    for pair in $VAULTNIX_VM_GEN; do
      run_checks "vm-tests/${pair%%=*}.nix" "import $here/vm-machines.nix { subset = $subset; gen = \"${pair#*=}\"; test = \"${pair%%=*}\"; }"
    done
  fi

  section "harness self-check: a defined value that throws fails \"config evaluates\""
  # check-node.nix forces only defined, visible options; this keeps it from forcing nothing.
  expr="let c = builtins.head (builtins.filter (x: builtins.match \".*config evaluates.*\" x.name != null) (import $here/check-node.nix { subset = $subset; modules = [ $base { systemd.services.selfcheck.environment.X = throw \"boom\"; environment.etc.selfcheck.text = throw \"boom\"; } ]; })); in { inherit (c) ok; broken = c.detail.broken or null; }"
  if ! msg=$(nixeval "$expr"); then
    fail "self-check: evaluation" "$(cat "$errlog")"
  elif [ "$msg" = '{"broken":["environment","systemd.services"],"ok":false}' ]; then
    pass "self-check: throwing values below systemd.services and environment are reported"
  else
    fail "self-check: throwing values not reported as expected" "$msg"
  fi
}

# ---- tier (a): real nixpkgs through the flakes (Nix >= 2.18); evaluates, builds nothing -------
nixf() { nix --extra-experimental-features 'nix-command flakes' "$@"; }
flake_eval_drv() { # flake_eval_drv <label> <installable> [nix args...]
  local label=$1 installable=$2 drv
  shift 2
  if ! drv=$(nixf eval --raw "$installable" "$@" 2>"$errlog"); then
    fail "$label" "$(cat "$errlog")"
  elif [[ $drv == /nix/store/*.drv ]]; then
    pass "$label: $drv"
  else
    fail "$label: not a derivation path" "$drv"
  fi
}
tier_flake() {
  # The generated flake's vaultnix input is this checkout, not github:vaultnix/vaultnix: its
  # git tree (git+file:, the files `nix flake check` of the repository sees, not target/ or
  # .tools/) or, outside git, the directory (path:). The output directory is no git
  # repository (path:), and no lock file is written into it.
  local self="path:$repo"
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then self="git+file://$repo"; fi
  local over=(--override-input vaultnix "$self" --no-write-lock-file)
  section "nix flake check --no-build --all-systems (repository: checks, packages, modules, VM tests)"
  if msg=$(nixf flake check --no-build --all-systems "$repo" 2>&1 >/dev/null); then
    pass "flake check --no-build: $repo"
  else
    fail "flake check --no-build: $repo" "$msg"
  fi
  section "nix flake check --no-build --all-systems ($out, vaultnix = this checkout)"
  if msg=$(nixf flake check --no-build --all-systems "path:$out" "${over[@]}" 2>&1 >/dev/null); then
    pass "flake check --no-build: generated flake $out"
  else
    fail "flake check --no-build: generated flake $out" "$msg"
  fi
  section "drvPath of every machine's toplevel and image (x86_64 and aarch64; nothing built)"
  local name system image
  while IFS=$'\t' read -r name system image; do
    flake_eval_drv "$name ($system) toplevel" \
      "path:$out#nixosConfigurations.$name.config.system.build.toplevel.drvPath" "${over[@]}"
    flake_eval_drv "$name ($system) image $image" \
      "path:$out#packages.$system.$name-image.drvPath" "${over[@]}"
  done < <(machines name system image)
}

case $tier in
  broken) ;;
  flake) tier_flake ;;
  subset) tier_subset ;;
  none)
    section "evaluation"
    skip "evaluation of modules/ and of the machines in $out: SKIPPED" "$tier_reason"
    printf '      to evaluate here: install Nix >= 2.18 (tier a), e.g.\n'
    printf '        curl -L https://nixos.org/nix/install | sh -s -- --daemon\n'
    printf '      or point NIXPKGS_SUBSET at the nixpkgs-subset fixture (tier b).\n'
    ;;
esac

if [ "$skipped" -gt 0 ]; then
  printf '\nnix: %s\n%d passed, %d failed, %d skipped\n' "$tier_label" "$passed" "$failed" "$skipped"
else
  printf '\nnix: %s\n%d passed, %d failed\n' "$tier_label" "$passed" "$failed"
fi
[ "$failed" -eq 0 ]
