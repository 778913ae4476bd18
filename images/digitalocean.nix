# DigitalOcean (x86_64 only): the settings of the `digital-ocean` image variant (legacy GRUB
# on /dev/vda, metadata services for SSH keys). vaultnix sets the host name above the
# profile's empty default.
{ modulesPath, ... }:
{
  imports = [ (modulesPath + "/virtualisation/digital-ocean-config.nix") ];
}
