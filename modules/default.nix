# vaultnix's NixOS modules, one per concern. A generated `nodes/<machine>.nix` sets their
# options (vaultnix.*); `lib.mkCluster` in flake.nix imports this next to it.
{
  imports = [
    ./node.nix
    ./haproxy.nix
    ./overlay.nix
    ./firewall.nix
    ./backup.nix
    ./rehearsal.nix
    ./monitoring.nix
    ./hardening.nix
  ];
}
