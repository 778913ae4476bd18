# NixOS VM tests, run by `nix flake check` on a machine with KVM (x86_64-linux).
# Each test generates its cluster with the packaged CLI at build time
# (`vaultnix generate --spec <toml>`), so the machines run exactly what users get.
{
  pkgs,
  vaultnix,
  vaultnixModules,
}:
let
  common = import ./common.nix { inherit pkgs vaultnix vaultnixModules; };
in
{
  vm-cluster = pkgs.testers.runNixOSTest (import ./cluster.nix { inherit common; });
  vm-wireguard = pkgs.testers.runNixOSTest (import ./wireguard.nix { inherit common; });
}
