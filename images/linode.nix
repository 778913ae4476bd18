# Linode (x86_64 only): the settings of the `linode` image variant (unpartitioned /dev/sda,
# GRUB with a serial console for LISH). Its mkDefault swap on /dev/sdb is removed on
# servers by vaultnix.hardening.
{ modulesPath, ... }:
{
  imports = [ (modulesPath + "/virtualisation/linode-config.nix") ];
}
