# Host hardening for every vaultnix machine: no core dumps (they would contain unsealed key
# material), no swap on servers (the barrier key must never reach a disk), key-only SSH, and
# rotation of the server's audit log.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    types
    ;
  vlib = import ./lib.nix { inherit lib; };

  cfg = config.vaultnix.hardening;
  server = config.vaultnix.server;
  unit = vlib.unitOf server.engine;
in
{
  options.vaultnix.hardening = {
    enable = mkEnableOption "vaultnix's host hardening (no core dumps, no swap on servers, key-only SSH, audit log rotation)";

    rootAuthorizedKeys = mkOption {
      type = types.listOf types.singleLineStr;
      default = [ ];
      description = ''
        SSH public keys allowed to log in as root (for `nixos-rebuild --target-host`). Cloud
        images also fetch the provider's keys (Oracle, DigitalOcean).
      '';
    };

    auditLog = {
      rotate = mkOption {
        type = types.ints.positive;
        default = 14;
        description = "Number of rotated audit logs to keep.";
      };
      frequency = mkOption {
        type = types.enum [
          "hourly"
          "daily"
          "weekly"
          "monthly"
        ];
        default = "daily";
        description = "How often the audit log is rotated.";
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      warnings = lib.optional (
        cfg.rootAuthorizedKeys == [ ]
        && builtins.elem config.vaultnix.machine.provider [
          "onprem"
          "linode"
        ]
      ) "vaultnix.hardening: ${config.vaultnix.machine.name} (${config.vaultnix.machine.provider}) has no rootAuthorizedKeys: SSH is key-only and root has no password, so nobody can log in (spec: cluster.admin_ssh_keys).";
      # No core dumps anywhere: the kernel pipes them to `false`, setuid programs never
      # dump, and the hard limit is 0 for every login.
      systemd.coredump.enable = false;
      boot.kernel.sysctl = {
        "kernel.core_pattern" = "|${pkgs.coreutils}/bin/false";
        "fs.suid_dumpable" = 0;
      };
      security.pam.loginLimits = [
        {
          domain = "*";
          type = "hard";
          item = "core";
          value = "0";
        }
      ];

      services.openssh = {
        enable = lib.mkDefault true;
        settings = {
          PasswordAuthentication = lib.mkForce false;
          KbdInteractiveAuthentication = lib.mkForce false;
          PermitRootLogin = lib.mkDefault "prohibit-password";
        };
      };
      users.users.root.openssh.authorizedKeys.keys = cfg.rootAuthorizedKeys;
    }

    (mkIf server.enable {
      # mkForce: cloud profiles (linode) add a swap device with mkDefault.
      swapDevices = lib.mkForce [ ];
      zramSwap.enable = lib.mkForce false;

      # The server reopens its audit file on SIGHUP, so no copytruncate (no lost lines).
      services.logrotate.settings."vaultnix-audit" = {
        files = "/var/log/${unit}/audit.log";
        inherit (cfg.auditLog) frequency rotate;
        compress = true;
        delaycompress = true;
        missingok = true;
        notifempty = true;
        postrotate = "${pkgs.systemd}/bin/systemctl kill --signal=SIGHUP ${unit}.service";
      };
    })
  ]);
}
