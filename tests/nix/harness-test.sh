#!/usr/bin/env bash
# Tests of the Nix harness itself (tests/nix/eval.sh), run by scripts/test.sh:
#   1. a user's Nix configuration that makes Nix warn on stderr (an unknown setting, a build
#      users group that does not exist) does not break it: stderr never reaches what it parses
#   2. the tier choice: (b) when the nixpkgs-subset fixture exists, (c) when neither it nor Nix
#      >= 2.18 is there, (a) for Nix >= 2.18; a forced tier that cannot run is an error
#   3. tier (c) passes, says SKIPPED with the reason and counts the skip in the summary line
#
#   tests/nix/harness-test.sh OUT_DIR    (a `vaultnix generate` output directory)
# The last line is "N passed, M failed"; the exit status is non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(cd "${1:?usage: harness-test.sh OUT_DIR}" && pwd)
subset_dir=${NIXPKGS_SUBSET:-$repo/../shared/nixpkgs-subset}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
check() { # check <name> <condition-status> [detail]
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1)); printf 'ok    %s\n' "$1"
  else
    failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"
    if [ -n "${3:-}" ]; then printf '%s\n' "$3" | tail -n 30 | sed 's/^/      /'; fi
  fi
}
summary_re='^[0-9]+ passed, 0 failed(, [0-9]+ skipped)?$'

printf '\n== harness: a Nix configuration that warns on stderr\n'
warn_conf='vaultnix-harness-test-unknown-setting = 1
build-users-group = nixbld-does-not-exist'
# The premise: with the user's configuration plus the harness's own setting (appended by
# eval.sh), Nix still warns on stderr, and only the harness's setting silences the group warning.
NIX_CONFIG="$warn_conf
build-users-group =" nix-instantiate --eval -E 1 >/dev/null 2>"$tmp/warn.err" || true
grep -q "warning: unknown setting 'vaultnix-harness-test-unknown-setting'" "$tmp/warn.err"
check "premise: nix warns on stderr under the test configuration" $? "$(cat "$tmp/warn.err")"
! grep -q "build-users-group" "$tmp/warn.err"
check "the harness's build-users-group setting overrides a group that does not exist" $? "$(cat "$tmp/warn.err")"
if [ -f "$subset_dir/eval.nix" ]; then warn_tier=subset; else warn_tier=none; fi
status=0
NIX_TIER=$warn_tier NIX_CONFIG="$warn_conf" bash "$here/eval.sh" "$out" >"$tmp/warn.out" 2>"$tmp/warn.stderr" || status=$?
last=$(tail -n1 "$tmp/warn.out")
[ "$status" -eq 0 ] && [[ $last =~ $summary_re ]] && ! grep -q '^FAIL' "$tmp/warn.out"
check "eval.sh (tier $warn_tier) passes under a warning Nix configuration: $last" $? "$(cat "$tmp/warn.out")"

printf '\n== harness: tier selection (eval.sh --which-tier)\n'
# (auto unless the caller sets NIX_TIER on the call: a NIX_TIER of the user's does not leak in)
which_tier() { NIX_TIER=${force_tier:-auto} bash "$here/eval.sh" --which-tier "$out" 2>&1; }
# A PATH with nothing but a fake `nix` printing the given version (and what eval.sh itself uses).
fake_nix() { # fake_nix <dir> <version>
  mkdir -p "$1"
  printf '#!/bin/sh\necho "nix (Nix) %s"\n' "$2" >"$1/nix"
  chmod +x "$1/nix"
  for t in bash sed sort head python3 git dirname pwd; do
    if p=$(command -v "$t"); then ln -sf "$p" "$1/$t"; fi
  done
}
fake_nix "$tmp/nix-2.24" 2.24.9
fake_nix "$tmp/nix-2.9" 2.9.1
mkdir -p "$tmp/fixture"
touch "$tmp/fixture/eval.nix"

msg=$(NIXPKGS_SUBSET="$tmp/fixture" PATH="$tmp/nix-2.9" which_tier)
grep -q '^nix evaluation: tier (b) nixpkgs-subset' <<<"$msg"
check "fixture present, nix 2.9: tier (b) chosen" $? "$msg"
msg=$(NIXPKGS_SUBSET="$tmp/no-such-dir" PATH="$tmp/nix-2.9" which_tier)
grep -q '^nix evaluation: tier (c) parse + deadnix only: no Nix >= 2.18 (found: 2.9.1) and no nixpkgs-subset fixture' <<<"$msg"
check "no fixture, nix 2.9: tier (c) chosen, with the reason" $? "$msg"
msg=$(NIXPKGS_SUBSET="$tmp/fixture" PATH="$tmp/nix-2.24" which_tier)
grep -q '^nix evaluation: tier (a) flake: nix 2.24.9 >= 2.18' <<<"$msg"
check "nix 2.24: tier (a) chosen, even with the fixture present" $? "$msg"
status=0
msg=$(force_tier=flake PATH="$tmp/nix-2.9" which_tier) || status=$?
[ "$status" -ne 0 ] && grep -q 'NIX_TIER=flake needs Nix >= 2.18' <<<"$msg"
check "NIX_TIER=flake without Nix >= 2.18 is an error, not a fallback" $? "$msg"
status=0
msg=$(force_tier=subset NIXPKGS_SUBSET="$tmp/no-such-dir" which_tier) || status=$?
[ "$status" -ne 0 ] && grep -q 'no nixpkgs-subset fixture' <<<"$msg"
check "NIX_TIER=subset without the fixture is an error" $? "$msg"

printf '\n== harness: tier (c) reports the evaluation SKIPPED and passes\n'
status=0
NIX_TIER=none bash "$here/eval.sh" "$out" >"$tmp/none.out" 2>"$tmp/none.stderr" || status=$?
last=$(tail -n1 "$tmp/none.out")
[ "$status" -eq 0 ] && [[ $last =~ ^[0-9]+\ passed,\ 0\ failed,\ 1\ skipped$ ]] &&
  grep -q '^SKIP  evaluation of modules/ and of the machines in .*: SKIPPED' "$tmp/none.out" &&
  grep -q 'install Nix >= 2.18' "$tmp/none.out" &&
  grep -q '^ok    deadnix' "$tmp/none.out" && grep -q '^ok    parse ' "$tmp/none.out" &&
  ! grep -q 'config evaluates' "$tmp/none.out"
check "tier (c): parse + deadnix ran, evaluation SKIPPED loudly, exit 0: $last" $? "$(cat "$tmp/none.out")"

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
