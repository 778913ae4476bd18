# Shared pieces of the VM tests: generating a cluster with the packaged CLI, and turning a
# generated machine file into a test node with its (test-only) secrets in place.
{
  pkgs,
  vaultnix,
  vaultnixModules,
}:
let
  inherit (pkgs) lib;
in
rec {
  # The output directory of `vaultnix generate` for `spec`. It is written next to the build
  # directory first: generate swaps directories atomically, which needs a writable parent.
  generate =
    name: spec:
    pkgs.runCommand "vaultnix-generated-${name}" { nativeBuildInputs = [ vaultnix ]; } ''
      export HOME=$TMPDIR
      vaultnix generate --spec ${spec} --out "$TMPDIR/out"
      cp -r "$TMPDIR/out" "$out"
    '';

  # Test-only: the generated secrets are in the store, and symlinked to where the modules
  # expect them (vaultnix.secretsDir). On real hosts they come from agenix/sops-nix.
  secretLinks =
    gen: links:
    map (l: "L+ /var/lib/vaultnix/secrets/${l.to} - - - - ${gen}/secrets/${l.from}") links;

  # A server of the generated cluster as a test node; `extra` is one more module.
  server =
    gen: name: extra:
    { lib, ... }:
    {
      imports = [
        (gen + "/flake/nodes/${name}.nix")
        extra
      ];
      # The backup unit runs the packaged CLI, as mkCluster sets it.
      vaultnix.backup.package = vaultnix;
      systemd.tmpfiles.rules = secretLinks gen (
        [
          {
            from = "${name}.key";
            to = "tls.key";
          }
        ]
        ++ lib.optional (builtins.pathExists (gen + "/secrets/seal.key")) {
          from = "seal.key";
          to = "seal.key";
        }
        ++ lib.optional (builtins.pathExists (gen + "/secrets/${name}.wg.key")) {
          from = "${name}.wg.key";
          to = "wg.key";
        }
      );
      virtualisation.memorySize = 1536;
      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
        pkgs.netcat
        vaultnix
      ];
    };

  # The load balancer of the generated cluster as a test node.
  loadBalancer = gen: name: {
    imports = [ (gen + "/flake/nodes/${name}.nix") ];
    systemd.tmpfiles.rules = lib.optionals (builtins.pathExists (gen + "/secrets/${name}.wg.key")) (
      secretLinks gen [
        {
          from = "${name}.wg.key";
          to = "wg.key";
        }
      ]
    );
  };

  # A machine outside the cluster that trusts its CA and resolves the LB's name.
  client = gen: lbAddress: hostname: {
    security.pki.certificateFiles = [ (gen + "/flake/pki/ca.crt") ];
    networking.hosts.${lbAddress} = [ hostname ];
    environment.systemPackages = [
      pkgs.curl
      pkgs.jq
      pkgs.netcat
    ];
  };

  defaults = {
    imports = [ vaultnixModules ];
    # The firewall stays on, as on real hosts (the test framework enables it too).
    networking.firewall.enable = true;
  };

  # Python helpers shared by the test scripts.
  testLib = builtins.readFile ./lib.py;
}
