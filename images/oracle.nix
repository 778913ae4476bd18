# Oracle Cloud (Ampere A1 aarch64 or x86_64): the same settings as the `oci` image variant
# (EFI GRUB, serial consoles, root key from instance metadata, NTP from the metadata host),
# so `nixos-rebuild switch` on a booted image keeps its disks and boot loader.
{ modulesPath, ... }:
{
  imports = [ (modulesPath + "/virtualisation/oci-common.nix") ];
}
