# Evaluates every machine of a VM test (vm-tests/<test>.nix) the way runNixOSTest would build it —
# the test's `defaults` plus the machine's own module, with vaultnix's modules — against the
# nixpkgs-subset fixture, and returns one check per machine: its assertions hold and, for a server,
# its server unit and settings are there. The VMs themselves need KVM; this catches a machine whose
# configuration NixOS would refuse (e.g. a spare whose server JSON fails modules/node.nix's checks)
# in .ci/run. `gen` is what `vaultnix generate` wrote for the test's spec (common.generate builds
# the same in the VM test).
#   nix-instantiate --eval --strict --json --read-write-mode tests/nix/vm-machines.nix \
#     --arg subset ../shared/nixpkgs-subset --arg gen /tmp/vm-cluster --argstr test cluster
{
  subset,
  gen,
  test,
}:
let
  lib = import (subset + "/lib");
  pkgs = import (subset + "/pkgs.nix") {
    inherit lib;
    extraPackageNames = [
      "vaultnix"
      "curl"
      "jq"
      "netcat"
    ];
  };
  real = import ../../vm-tests/common.nix {
    inherit pkgs;
    inherit (pkgs) vaultnix;
    vaultnixModules = ../../modules;
  };
  # common.generate runs the packaged CLI in a build; here it is the directory generated outside.
  common = real // {
    generate = _name: _spec: gen;
  };
  t = import (../../vm-tests + "/${test}.nix") { inherit common; };
  eval =
    name:
    import ./eval-node.nix {
      inherit subset;
      modules = [
        t.defaults
        t.nodes.${name}
        { networking.hostName = lib.mkDefault name; }
      ];
    };
  check =
    name:
    let
      r = eval name;
      c = r.config;
      failed = r.failedAssertions;
      server = c.vaultnix.server.enable or false;
      unit = c.vaultnix.server.engine or "openbao";
      # Every timer forced whole: an option the generated module sets and the test's machine sets
      # again without mkForce (two different values of a str) is an evaluation error there.
      timers = builtins.tryEval (builtins.deepSeq c.systemd.timers true);
      problems =
        map (m: "assertion: ${m}") failed
        ++ lib.optional (server && !(c.systemd.services ? ${unit})) "no ${unit}.service"
        ++ lib.optional (!timers.success) "systemd.timers do not evaluate (an option defined twice?)";
    in
    {
      name = "vm-tests/${test}.nix: machine ${name} evaluates with vaultnix's modules${lib.optionalString server " (server)"}";
      ok = problems == [ ];
      detail = lib.concatStringsSep "\n" problems;
    };
in
map check (builtins.attrNames t.nodes)
