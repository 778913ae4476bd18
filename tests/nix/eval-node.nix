# Evaluates vaultnix's modules plus `modules` against the nixpkgs-subset fixture. Undeclared
# names below vaultnix.<group> are rejected like those below services.openbao & co., and near
# misses of a group name (vaultnix.servr) too; without this the fixture's free-form catch-all
# would accept them silently.
{
  subset,
  modules,
  system ? "x86_64-linux",
}:
let
  vaultnixGroups = [
    "clusterName"
    "machine"
    "secretsDir"
    "pki"
    "server"
    "loadBalancer"
    "overlay"
    "firewall"
    "backup"
    "monitoring"
    "hardening"
  ];
  # The fixture's stand-in packages all have version "0-fixture"; a real nixpkgs has a real
  # one. Give the engine package the rendered version (mkDefault: a test that sets
  # services.<engine>.package itself, e.g. to another version, wins) so that the version
  # assertion of modules/node.nix is exercised, not switched off.
  versionShim =
    { config, pkgs, lib, ... }:
    let
      v = config.vaultnix.server.version;
    in
    {
      config = lib.mkIf (v != null) {
        services.openbao.package = lib.mkDefault (pkgs.openbao // { version = v; });
        services.vault.package = lib.mkDefault (pkgs.vault // { version = v; });
      };
    };
in
import (subset + "/eval.nix") {
  inherit system;
  modules = [
    ../../modules
    versionShim
    # mkCluster sets the backup unit's package to vaultnix's own; the fixture has a stand-in.
    (
      { lib, pkgs, ... }:
      {
        vaultnix.backup.package = lib.mkDefault pkgs.vaultnix;
        vaultnix.server.drain.package = lib.mkDefault pkgs.vaultnix;
      }
    )
  ]
  ++ modules;
  extraPackageNames = [
    "prometheus"
    "vaultnix"
    "restic"
  ];
  strictPrefixes = [
    [
      "services"
      "openbao"
    ]
    [
      "services"
      "vault"
    ]
    [
      "services"
      "haproxy"
    ]
    [
      "services"
      "tailscale"
    ]
    [
      "networking"
      "wireguard"
    ]
  ]
  ++ map (g: [
    "vaultnix"
    g
  ]) vaultnixGroups;
}
