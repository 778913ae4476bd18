# Evaluates lib.mkCluster (nix/mk-cluster.nix) on an output directory with a stand-in
# nixosSystem that evaluates the machine's modules against the nixpkgs-subset fixture
# (provider profiles need real nixpkgs and are only recorded). Returns a list of checks.
{
  subset,
  src,
}:
let
  fixtureLib = (import (subset + "/eval.nix") { modules = [ ]; }).lib;
  h = import ./helpers.nix { lib = fixtureLib; };
  cluster = fixtureLib.importJSON (src + "/cluster.json");

  providerModule = provider: {
    _file = "provider-${provider}";
  };

  fakeVaultnix = {
    inputs.nixpkgs.lib = fixtureLib // {
      nixosSystem =
        { modules }:
        let
          # modules = [ default provider node { nixpkgs.hostPlatform; ... } ] ++ extra
          node = builtins.elemAt modules 2;
          platform = (builtins.elemAt modules 3).nixpkgs.hostPlatform;
          r = import ./eval-node.nix {
            inherit subset;
            system = platform;
            modules = [ node ];
          };
        in
        {
          inherit (r) failedAssertions;
          inherit platform;
          provider = (builtins.elemAt modules 1)._file;
          vaultnix = r.config.vaultnix;
          # images are variants of the real configuration; here only their names matter
          config.system.build.images = fixtureLib.genAttrs [
            "qemu-efi"
            "raw-efi"
            "oci"
            "linode"
            "digital-ocean"
          ] (v: "image:${v}:${platform}");
        };
    };
    nixosModules = {
      default = ../../modules;
    }
    // fixtureLib.genAttrs [
      "provider-onprem"
      "provider-oracle"
      "provider-linode"
      "provider-digitalocean"
    ] (n: providerModule (fixtureLib.removePrefix "provider-" n));
  };

  out = import ../../nix/mk-cluster.nix { self = null; } {
    inherit src;
    vaultnix = fakeVaultnix;
  };
  names = map (m: m.name) cluster.machines;
in
[
  (h.check "mkCluster: one nixosConfiguration per machine in cluster.json" (
    builtins.attrNames out.nixosConfigurations == fixtureLib.sort builtins.lessThan names
  ) (builtins.attrNames out.nixosConfigurations))
  (h.check "mkCluster: packages.<system>.<machine>-image for both systems" (
    builtins.attrNames out.packages == [
      "aarch64-linux"
      "x86_64-linux"
    ]
    && fixtureLib.all (
      s: builtins.attrNames out.packages.${s} == fixtureLib.sort builtins.lessThan (map (n: "${n}-image") names)
    ) (builtins.attrNames out.packages)
  ) out.packages)
]
++ map (
  m:
  let
    c = out.nixosConfigurations.${m.name};
  in
  h.check
    "mkCluster: ${m.name} = ${m.provider} profile + nodes/${m.name}.nix on ${m.system}, image ${m.image}"
    (
      c.provider == "provider-${m.provider}"
      && c.platform == m.system
      && c.vaultnix.machine.name == m.name
      && c.vaultnix.machine.system == m.system
      && c.vaultnix.machine.provider == m.provider
      && out.packages.x86_64-linux."${m.name}-image" == "image:${m.image}:${m.system}"
      && c.failedAssertions == [ ]
    )
    {
      inherit (c) provider platform failedAssertions;
      image = out.packages.x86_64-linux."${m.name}-image";
    }
) cluster.machines
