# Scheduled raft snapshots through the HTTP API (GET /v1/sys/storage/raft/snapshot), so the
# same job works for OpenBao and Vault and needs neither the CLI nor vaultnix on the host.
# Each run writes <dest>/<cluster>-<node>-<UTC time>.snap atomically (temp file, fsync,
# rename) with a sha256sum-compatible sidecar, prunes snapshots older than retentionDays, and
# records its last success for the node exporter's textfile collector.
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
  textfileDir = top.monitoring.textfileDir;

  # https://10.88.0.1:8200 -> [ "10.88.0.1" "8200" ]; lets curl verify the certificate
  # against tlsServerName while connecting to the configured address.
  hostPort = builtins.match "https://(\\[[^]]+]|[^:/]+):([0-9]+)/?" cfg.apiAddr;
  url =
    if cfg.tlsServerName == null then
      cfg.apiAddr
    else
      "https://${cfg.tlsServerName}:${builtins.elemAt hostPort 1}";
  resolve = lib.optionalString (
    cfg.tlsServerName != null
  ) "${cfg.tlsServerName}:${builtins.elemAt hostPort 1}:${lib.removeSuffix "]" (lib.removePrefix "[" (builtins.head hostPort))}";
  prefix = "${top.clusterName}-${top.machine.name}";
in
{
  options.vaultnix.backup = {
    enable = mkEnableOption "scheduled raft snapshots of this server";

    onCalendar = mkOption {
      type = types.str;
      default = "daily";
      example = "*-*-* 02:30:00";
      description = "When to take a snapshot ({manpage}`systemd.time(7)` calendar event).";
    };

    retentionDays = mkOption {
      type = types.ints.positive;
      default = 30;
      description = "Snapshots (and their sidecars) older than this many days are deleted after a successful run.";
    };

    destination = mkOption {
      type = types.strMatching "/.+";
      default = "/var/backups/vaultnix";
      description = "Directory (root-only) receiving the snapshots. Copy it off the host with your backup tool.";
    };

    tokenFile = mkOption {
      type = vlib.secretPath;
      default = "${top.secretsDir}/backup-token";
      defaultText = literalExpression ''"''${config.vaultnix.secretsDir}/backup-token"'';
      description = ''
        File holding a token allowed to `read` `sys/storage/raft/snapshot`. Passed with
        `LoadCredential`; the token never appears on a command line or in the store.
      '';
    };

    apiAddr = mkOption {
      type = types.strMatching "https://.+";
      example = "https://10.88.0.1:8200";
      description = "API address of this node (a standby forwards the request to the active node).";
    };

    tlsServerName = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "vault-1.vault.internal";
      description = "Name to verify the server certificate against, when apiAddr is an IP address not in it.";
    };

    caCertFile = mkOption {
      type = types.str;
      default = "/etc/vaultnix/ca.crt";
      description = "CA bundle used to verify the server.";
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
        assertion = cfg.tlsServerName != null -> hostPort != null;
        message = "vaultnix.backup.apiAddr must look like https://<host>:<port> when tlsServerName is set, got ${cfg.apiAddr}.";
      }
    ];

    systemd.tmpfiles.rules = [
      "d ${cfg.destination} 0700 root root -"
      "d ${textfileDir} 0755 root root -"
    ];

    systemd.services.vaultnix-backup = {
      description = "vaultnix: raft snapshot of ${top.clusterName}";
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      path = [
        pkgs.coreutils
        pkgs.curl
        pkgs.findutils
        pkgs.gzip
      ];
      environment = {
        DEST = cfg.destination;
        PREFIX = prefix;
        URL = "${url}/v1/sys/storage/raft/snapshot";
        CACERT = cfg.caCertFile;
        RETENTION_DAYS = toString cfg.retentionDays;
        TEXTFILE_DIR = textfileDir;
        RESOLVE = resolve;
        METRIC_LABELS = ''cluster="${top.clusterName}",node="${top.machine.name}"'';
      };
      script = ''
        set -euo pipefail
        umask 077
        name="$PREFIX-$(date -u +%Y%m%dT%H%M%SZ).snap"
        tmp=$(mktemp -p "$DEST" .partial.XXXXXX)
        trap 'rm -f "$tmp" "$tmp.sha256"' EXIT

        # The token goes to curl on stdin (a config file), never on its command line.
        printf 'header = "X-Vault-Token: %s"\n' "$(cat "$CREDENTIALS_DIRECTORY/token")" |
          curl --config - --fail --silent --show-error --max-time 600 \
            --cacert "$CACERT" ''${RESOLVE:+--resolve "$RESOLVE"} --output "$tmp" "$URL"

        # A raft snapshot is a gzip'd tar: refuse empty or truncated downloads.
        test -s "$tmp"
        gzip --test "$tmp"

        sum=$(sha256sum "$tmp" | cut -d' ' -f1)
        printf '%s  %s\n' "$sum" "$name" > "$tmp.sha256"
        sync "$tmp" "$tmp.sha256"
        mv "$tmp" "$DEST/$name"
        mv "$tmp.sha256" "$DEST/$name.sha256"
        sync "$DEST"

        find "$DEST" -maxdepth 1 -type f \( -name "$PREFIX-*.snap" -o -name "$PREFIX-*.snap.sha256" \) \
          -mtime +"$RETENTION_DAYS" -delete

        prom=$(mktemp -p "$TEXTFILE_DIR" .vaultnix_backup.XXXXXX)
        {
          echo '# HELP vaultnix_backup_last_success_timestamp_seconds Time of the last successful raft snapshot.'
          echo '# TYPE vaultnix_backup_last_success_timestamp_seconds gauge'
          echo "vaultnix_backup_last_success_timestamp_seconds{$METRIC_LABELS} $(date +%s)"
          echo '# HELP vaultnix_backup_last_size_bytes Size of the last successful raft snapshot.'
          echo '# TYPE vaultnix_backup_last_size_bytes gauge'
          echo "vaultnix_backup_last_size_bytes{$METRIC_LABELS} $(stat -c %s "$DEST/$name")"
        } > "$prom"
        chmod 0644 "$prom"
        mv "$prom" "$TEXTFILE_DIR/vaultnix_backup.prom"
        echo "snapshot written: $DEST/$name ($sum)"
      '';
      serviceConfig = {
        Type = "oneshot";
        LoadCredential = [ "token:${cfg.tokenFile}" ];
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ReadWritePaths = [
          cfg.destination
          textfileDir
        ];
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
