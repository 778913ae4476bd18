# Scheduled raft snapshots: the unit runs the vaultnix binary itself,
# `vaultnix backup run --config /etc/vaultnix/backup.json`, with the config rendered by
# `vaultnix generate` (nodes/<node>.backup.json) and the token passed with LoadCredential. The
# binary takes the snapshot from the ACTIVE node whichever server runs it, writes it with the same
# checksummed sidecar `vaultnix snapshot save` writes, verifies it as `snapshot restore` would,
# prunes old ones and records its last success for the node exporter's textfile collector.
# The lab runs the same command on the same rendered file.
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

  cfg = config.vaultnix.backup;
  top = config.vaultnix;
  # Data, not logic: where the job writes is read from the same file the binary reads.
  job = lib.importJSON cfg.configFile;
  configPath = "/etc/vaultnix/backup.json";
  credential = "backup-token";
  restic = job.restic or null;
in
{
  options.vaultnix.backup = {
    enable = mkEnableOption "scheduled raft snapshots of the cluster (taken from the active node)";

    package = mkOption {
      type = types.package;
      defaultText = literalExpression "vaultnix.packages.\${system}.vaultnix (set by vaultnix.lib.mkCluster)";
      description = "The vaultnix package whose binary runs the backup job.";
    };

    configFile = mkOption {
      type = types.path;
      example = literalExpression "./vault-1.backup.json";
      description = "The backup job's configuration, rendered by `vaultnix generate` (nodes/<node>.backup.json).";
    };

    onCalendar = mkOption {
      type = types.str;
      default = "daily";
      example = "*-*-* 02:30:00";
      description = "When to take a snapshot ({manpage}`systemd.time(7)` calendar event).";
    };

    tokenFile = mkOption {
      type = vlib.secretPath;
      default = "${top.secretsDir}/backup-token";
      defaultText = literalExpression ''"''${config.vaultnix.secretsDir}/backup-token"'';
      description = ''
        File holding a token allowed to `read` `sys/storage/raft/snapshot` (`vaultnix bootstrap
        --backup-token` creates one). Passed with `LoadCredential`; the token never appears on a
        command line or in the store.
      '';
    };

    # [backup.restic] (issue 17): the verified snapshot is copied off the host with restic.
    resticPackage = mkOption {
      type = types.package;
      default = pkgs.restic;
      defaultText = literalExpression "pkgs.restic";
      description = "The restic package on the unit's PATH (used when configFile has a `restic` section).";
    };

    resticPasswordFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      description = "The restic repository password file (`[backup.restic] password_file`), passed with `LoadCredential`.";
    };

    resticEnvironmentFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      description = "KEY=VALUE lines for restic (`[backup.restic] environment_file`), passed with `LoadCredential`.";
    };

    randomizedDelaySec = mkOption {
      type = types.str;
      default = "10m";
      description = "Random delay before each run, so the servers do not snapshot at the same instant.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = job.token_file == "/run/credentials/vaultnix-backup.service/${credential}";
        message = "vaultnix.backup.configFile: token_file must be the unit's credential /run/credentials/vaultnix-backup.service/${credential}, got ${job.token_file}.";
      }
      {
        assertion = job.textfile_dir == null || job.textfile_dir == top.monitoring.textfileDir;
        message = "vaultnix.backup.configFile: textfile_dir ${toString job.textfile_dir} differs from vaultnix.monitoring.textfileDir ${top.monitoring.textfileDir}.";
      }
    ]
    ++ lib.optionals (restic != null) [
      {
        assertion = cfg.resticPasswordFile != null && restic.password_file == "/run/credentials/vaultnix-backup.service/restic-password";
        message = "vaultnix.backup: configFile copies to restic: set resticPasswordFile (its password_file is the unit's credential restic-password).";
      }
      {
        assertion = ((restic.environment_file or null) == null) == (cfg.resticEnvironmentFile == null);
        message = "vaultnix.backup: resticEnvironmentFile must be set exactly when configFile names an environment file.";
      }
    ];

    environment.etc."vaultnix/backup.json".source = cfg.configFile;

    systemd.tmpfiles.rules = [
      "d ${job.dir} 0700 root root -"
    ]
    ++ lib.optional (job.textfile_dir != null) "d ${job.textfile_dir} 0755 root root -";

    systemd.services.vaultnix-backup = {
      description = "vaultnix: raft snapshot of ${top.clusterName} (from the active node)";
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ cfg.configFile ];
      path = lib.optional (restic != null) cfg.resticPackage;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${lib.getExe' cfg.package "vaultnix"} backup run --config ${configPath}";
        LoadCredential = [
          "${credential}:${cfg.tokenFile}"
        ]
        ++ lib.optional (cfg.resticPasswordFile != null) "restic-password:${cfg.resticPasswordFile}"
        ++ lib.optional (cfg.resticEnvironmentFile != null) "restic-env:${cfg.resticEnvironmentFile}";
        UMask = "0077";
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ReadWritePaths = [ job.dir ] ++ lib.optional (job.textfile_dir != null) job.textfile_dir;
        NoNewPrivileges = true;
        LimitCORE = 0;
      };
    };

    systemd.timers.vaultnix-backup = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.onCalendar;
        Persistent = true;
        RandomizedDelaySec = cfg.randomizedDelaySec;
      };
    };
  };
}
