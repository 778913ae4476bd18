# On-prem machines and plain VMs: the layout of the `qemu-efi` / `raw-efi` images
# (GPT, ESP labelled ESP, ext4 root labelled nixos that grows to the disk, systemd-boot).
# Installing on bare metal with another layout? Pass your hardware-configuration.nix via
# mkCluster's `extraModules`; its definitions override these defaults.
{ lib, modulesPath, ... }:
{
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];

  boot.loader.systemd-boot.enable = lib.mkDefault true;
  boot.loader.efi.canTouchEfiVariables = lib.mkDefault false;
  boot.growPartition = lib.mkDefault true;

  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  fileSystems."/boot" = lib.mkDefault {
    device = "/dev/disk/by-label/ESP";
    fsType = "vfat";
  };
}
