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
in
import (subset + "/eval.nix") {
  inherit system;
  modules = [
    ../../modules
    # mkCluster sets the backup unit's package to vaultnix's own; the fixture has a stand-in.
    (
      { lib, pkgs, ... }:
      {
        vaultnix.backup.package = lib.mkDefault pkgs.vaultnix;
      }
    )
  ]
  ++ modules;
  extraPackageNames = [
    "prometheus"
    "vaultnix"
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
