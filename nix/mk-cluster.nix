# lib.mkCluster: the outputs of a directory written by `vaultnix generate`.
#
#   vaultnix.lib.mkCluster { src = ./.; }
#   => {
#        nixosConfigurations.<machine> = nixosSystem { ... };
#        packages.<system>."<machine>-image" = <config.system.build.images.<variant>>;
#        # (every image for both systems; an image is always built for its machine's system)
#      }
#
# `${src}/cluster.json` lists the machines with their provider, Nix system and image variant;
# each configuration imports vaultnix's modules, the generated `${src}/nodes/<machine>.nix`
# and the provider profile (images/<provider>.nix), which gives the installed system
# the same disks and boot loader as the image it was booted from.
{ self }:
{
  src,
  vaultnix ? self,
  extraModules ? [ ],
}:
let
  inherit (vaultnix.inputs.nixpkgs) lib;
  cluster = lib.importJSON (src + "/cluster.json");

  mkMachine =
    m:
    lib.nixosSystem {
      modules = [
        vaultnix.nixosModules.default
        vaultnix.nixosModules.${"provider-" + m.provider}
        (src + "/nodes/${m.name}.nix")
        {
          nixpkgs.hostPlatform = m.system;
          system.stateVersion = lib.mkDefault "26.05";
          # The backup unit runs this flake's own binary.
          vaultnix.backup.package = lib.mkDefault vaultnix.packages.${m.system}.vaultnix;
          vaultnix.server.drain.package = lib.mkDefault vaultnix.packages.${m.system}.vaultnix;
          # `vaultnix metrics` (certificate expiry, raft size) runs the same binary as the CLI.
          vaultnix.monitoring.package = lib.mkDefault vaultnix.packages.${m.system}.vaultnix;
        }
      ]
      ++ extraModules;
    };

  nixosConfigurations = lib.listToAttrs (
    map (m: lib.nameValuePair m.name (mkMachine m)) cluster.machines
  );

  # Every image under every system: `nix build .#vault-2-image` works from an x86_64 host
  # for an aarch64 machine too, given an aarch64 builder or binfmt emulation.
  images = lib.listToAttrs (
    map (
      m:
      lib.nameValuePair "${m.name}-image"
        nixosConfigurations.${m.name}.config.system.build.images.${m.image}
    ) cluster.machines
  );
in
{
  inherit nixosConfigurations;
  packages = lib.genAttrs [
    "x86_64-linux"
    "aarch64-linux"
  ] (_: images);
}
