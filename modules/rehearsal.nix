# Restore rehearsal ([backup.restic], issue 17): a timer (on the load balancer by default) runs the
# vaultnix binary itself, `vaultnix backup rehearse --config /etc/vaultnix/rehearsal.json`, with the
# config rendered by `vaultnix generate` (nodes/<host>.rehearsal.json). The binary takes the newest
# copy from the restic repository, verifies it, restores it into a throwaway single-node server on
# loopback (the same OpenBao/Vault package as the servers), reads back the canary the backup job
# wrote and records vaultnix_restore_rehearsal_* for the node exporter's textfile collector. Every
# secret reaches the unit with LoadCredential; none is in the store. The lab runs the same command.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkEnableOption
    mkIf
    mkOption
    types
    ;
  vlib = import ./lib.nix { inherit lib; };

  cfg = config.vaultnix.rehearsal;
  top = config.vaultnix;
  job = lib.importJSON cfg.configFile;
  configPath = "/etc/vaultnix/rehearsal.json";
  unit = "vaultnix-rehearse";
  cred = name: "/run/credentials/${unit}.service/${name}";
in
{
  options.vaultnix.rehearsal = {
    enable = mkEnableOption "scheduled restore rehearsals from the restic repository";

    package = mkOption {
      type = types.package;
      defaultText = literalExpression "config.vaultnix.backup.package";
      description = "The vaultnix package whose binary runs the rehearsal.";
    };

    serverPackage = mkOption {
      type = types.package;
      default = if top.server.engine == "vault" then pkgs.vault else pkgs.openbao;
      defaultText = literalExpression "pkgs.openbao";
      description = "The server package the throwaway server runs: the cluster's (its `bao`/`vault` binary).";
    };

    resticPackage = mkOption {
      type = types.package;
      default = pkgs.restic;
      defaultText = literalExpression "pkgs.restic";
      description = "The restic package on the unit's PATH.";
    };

    configFile = mkOption {
      type = types.path;
      example = literalExpression "./lb.rehearsal.json";
      description = "The rehearsal's configuration, rendered by `vaultnix generate` (nodes/<host>.rehearsal.json).";
    };

    onCalendar = mkOption {
      type = types.str;
      default = "daily";
      description = "When to rehearse ({manpage}`systemd.time(7)` calendar event).";
    };

    randomizedDelaySec = mkOption {
      type = types.str;
      default = "30m";
      description = "Random delay before each rehearsal (systemd `RandomizedDelaySec=`).";
    };

    tokenFile = mkOption {
      type = vlib.secretPath;
      default = "${top.secretsDir}/backup-token";
      defaultText = literalExpression ''"''${config.vaultnix.secretsDir}/backup-token"'';
      description = "The backup token (it reads back the canary it wrote). Passed with `LoadCredential`.";
    };

    passwordFile = mkOption {
      type = vlib.secretPath;
      description = "The restic repository password file (`[backup.restic] password_file`).";
    };

    environmentFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      description = "KEY=VALUE lines for restic (`[backup.restic] environment_file`), e.g. S3 credentials.";
    };

    unsealKeysFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      description = "Shamir: the original cluster's unseal keys (init.json, or one key a line).";
    };

    sealKeyFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      description = "Static seal: the cluster's seal key.";
    };
  };

  config = mkIf cfg.enable {
    vaultnix.rehearsal.package = lib.mkDefault top.backup.package;

    assertions = [
      {
        assertion = job.restic.password_file == cred "restic-password" && job.token_file == cred "backup-token";
        message = "vaultnix.rehearsal.configFile: the password and token files must be the unit's credentials.";
      }
      {
        assertion = (job.unseal_keys_file == null) == (cfg.unsealKeysFile == null) && (job.static_key_file == null) == (cfg.sealKeyFile == null);
        message = "vaultnix.rehearsal: unsealKeysFile / sealKeyFile must match the seal of configFile (${job.seal_kind}).";
      }
      {
        assertion = ((job.restic.environment_file or null) == null) == (cfg.environmentFile == null);
        message = "vaultnix.rehearsal: environmentFile must be set exactly when configFile names one.";
      }
    ];

    environment.etc."vaultnix/rehearsal.json".source = cfg.configFile;

    systemd.tmpfiles.rules = [
      "d ${job.work_dir} 0700 root root -"
    ]
    ++ lib.optional (job.textfile_dir != null) "d ${job.textfile_dir} 0755 root root -";

    systemd.services.${unit} = {
      description = "vaultnix: restore rehearsal of ${top.clusterName} from the restic repository";
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ cfg.configFile ];
      path = [
        cfg.resticPackage
        cfg.serverPackage
      ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${lib.getExe' cfg.package "vaultnix"} backup rehearse --config ${configPath}";
        LoadCredential = [
          "backup-token:${cfg.tokenFile}"
          "restic-password:${cfg.passwordFile}"
        ]
        ++ lib.optional (cfg.environmentFile != null) "restic-env:${cfg.environmentFile}"
        ++ lib.optional (cfg.unsealKeysFile != null) "unseal-keys:${cfg.unsealKeysFile}"
        ++ lib.optional (cfg.sealKeyFile != null) "seal.key:${cfg.sealKeyFile}";
        UMask = "0077";
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ReadWritePaths = [ job.work_dir ] ++ lib.optional (job.textfile_dir != null) job.textfile_dir;
        NoNewPrivileges = true;
        LimitCORE = 0;
      };
    };

    systemd.timers.${unit} = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.onCalendar;
        Persistent = true;
        RandomizedDelaySec = cfg.randomizedDelaySec;
      };
    };
  };
}
