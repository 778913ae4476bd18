{
  description = "vaultnix: one TOML spec to a highly-available OpenBao/Vault Raft cluster on NixOS";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        vaultnix = pkgs.callPackage ./nix/package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.vaultnix;
      });

      nixosModules = {
        default = ./modules;
        provider-onprem = ./images/onprem.nix;
        provider-oracle = ./images/oracle.nix;
        provider-linode = ./images/linode.nix;
        provider-digitalocean = ./images/digitalocean.nix;
      };

      lib.mkCluster = import ./nix/mk-cluster.nix { inherit self; };

      # `nix flake check` on a KVM machine: the NixOS VM tests (x86_64 only: they need KVM)
      # plus a full evaluation and build of every system in docs/contract against real
      # nixpkgs (module types, NixOS-wide assertions, promtool on the rules, haproxy -c).
      checks = forAllSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          contract = self.lib.mkCluster { src = ./docs/contract; };
          toplevels = lib.mapAttrs' (
            name: c: lib.nameValuePair "contract-${name}" c.config.system.build.toplevel
          ) (lib.filterAttrs (_: c: c.pkgs.stdenv.hostPlatform.system == system) contract.nixosConfigurations);
        in
        {
          vaultnix = self.packages.${system}.vaultnix;
        }
        // toplevels
        // lib.optionalAttrs (system == "x86_64-linux") (
          import ./vm-tests {
            inherit pkgs;
            vaultnix = self.packages.${system}.vaultnix;
            vaultnixModules = self.nixosModules.default;
          }
        )
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.vaultnix ];
          packages = with pkgs; [
            cargo
            clippy
            rustc
            rustfmt
            rust-analyzer
            openbao
            haproxy
            prometheus # promtool
            openssl
            deadnix
            nixfmt
          ];
        };
      });

      # `nix fmt` (Nix >= 2.25) passes no file when none is named: plain nixfmt then reads stdin
      # and hangs; nixfmt-tree (treefmt with nixfmt) formats the whole tree.
      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
