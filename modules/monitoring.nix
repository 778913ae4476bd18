# Prometheus on every server, with the configuration and rules rendered by vaultnix
# (monitoring/prometheus.yml, monitoring/alerts.yml) deployed unchanged: each server's
# Prometheus scrapes the metrics listener of every server (TLS, verified with the cluster CA,
# no token; the firewall admits only the servers) and the local node exporter, whose textfile
# collector carries the backup job's metrics. Cluster-wide alerts (no active node) therefore
# see the whole cluster from any survivor. The load balancer runs only the node exporter
# (runPrometheus = false), bound on its overlay/cluster address and admitted from the servers,
# whose Prometheus scrapes it (job `lb`): the restore rehearsal's metrics live there by default.
{
  config,
  lib,
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

  cfg = config.vaultnix.monitoring;
  top = config.vaultnix;
  # Where the rendered prometheus.yml loads its rules from (render::prometheus::NIXOS_RULES_FILE).
  rulesPath = "vaultnix/prometheus/alerts.yml";
in
{
  options.vaultnix.monitoring = {
    enable = mkEnableOption "Prometheus, the node exporter and vaultnix's alert rules";

    configFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "../monitoring/prometheus.yml";
      description = ''
        prometheus.yml rendered by `vaultnix generate`, deployed unchanged
        (`services.prometheus.configText`).
      '';
    };

    alertRulesFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "../monitoring/alerts.yml";
      description = "Prometheus alerting rules rendered by `vaultnix generate` (linked to /etc/${rulesPath}).";
    };

    metricsPort = mkOption {
      type = types.port;
      default = 9102;
      description = "Port of the servers' metrics listener (the rendered server JSON binds it).";
    };

    metricsAllowedCIDRs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "10.88.0.1/32"
        "10.88.0.2/32"
      ];
      description = "Sources admitted to the metrics port: the servers, whose Prometheus scrapes this one.";
    };

    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = literalExpression "vaultnix (set by lib.mkCluster)";
      description = ''
        The vaultnix binary whose `vaultnix metrics` writes the certificate-expiry and raft-size
        metrics from a timer. `null`: no such metrics (the expiry and growth alerts cannot fire).
      '';
    };

    certFiles = mkOption {
      type = types.attrsOf types.str;
      default = {
        node = "/etc/vaultnix/tls.crt";
        ca = "/etc/vaultnix/ca.crt";
      };
      description = "Certificates reported as `vaultnix_cert_not_after_timestamp_seconds{cert=<name>}`.";
    };

    raftDir = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/openbao";
      description = "Raft storage directory whose database sizes are reported (`vaultnix_raft_db_size_bytes`).";
    };

    metricsInterval = mkOption {
      type = types.str;
      default = "15min";
      description = "How often `vaultnix metrics` runs ({manpage}`systemd.time(7)` time span).";
    };

    textfileDir = mkOption {
      type = vlib.secretPath;
      default = "/var/lib/vaultnix/textfile";
      description = "Directory of the node exporter's textfile collector (vaultnix_backup_* metrics).";
    };

    nodeExporterPort = mkOption {
      type = types.port;
      default = 9100;
      description = "Port of the node exporter (the servers' rendered prometheus.yml scrapes 127.0.0.1:9100 and the load balancer's <address>:9100).";
    };

    nodeExporterAddress = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "10.88.0.10";
      description = ''
        Address the node exporter listens on: loopback on the servers; the overlay/cluster address
        on the load balancer, whose exporter the servers scrape. Never a wildcard address.
      '';
    };

    nodeExporterAllowedCIDRs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "10.88.0.1/32" ];
      description = "Sources admitted to the node exporter's port (the servers, on the load balancer); never opened to everyone.";
    };

    runPrometheus = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether this host runs Prometheus with the rendered configuration and rules (the servers).
        The load balancer sets `false`: it runs only the node exporter, scraped by the servers.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = !cfg.runPrometheus || (cfg.configFile != null && cfg.alertRulesFile != null);
        message = "vaultnix.monitoring: set configFile and alertRulesFile (monitoring/prometheus.yml and alerts.yml from `vaultnix generate`).";
      }
      {
        assertion = !(lib.elem cfg.nodeExporterAddress [
          ""
          "0.0.0.0"
          "::"
          "[::]"
          "*"
        ]);
        message = "vaultnix.monitoring.nodeExporterAddress ${cfg.nodeExporterAddress}: the node exporter must not listen on every address (loopback, or the overlay address).";
      }
    ];

    environment.etc.${rulesPath} = mkIf (cfg.runPrometheus && cfg.alertRulesFile != null) {
      source = cfg.alertRulesFile;
    };

    # Bound on the overlay address: start once the overlay is up.
    systemd.services.prometheus-node-exporter = mkIf (cfg.nodeExporterAddress != "127.0.0.1") {
      wants = top.overlay.readyUnits;
      after = top.overlay.readyUnits;
    };

    services.prometheus = {
      enable = cfg.runPrometheus;
      # Listens on loopback only; nothing else reads this Prometheus's API.
      listenAddress = "127.0.0.1";
      configText = mkIf (cfg.configFile != null) (builtins.readFile cfg.configFile);
      # The rules live under /etc (absent in the build sandbox) and the CA file is read at run time:
      # check the syntax only at build time. vaultnix's tests run `promtool check config` and
      # `check rules` on the rendered files and real Prometheus with them.
      checkConfig = "syntax-only";

      exporters.node = {
        enable = true;
        listenAddress = cfg.nodeExporterAddress;
        port = cfg.nodeExporterPort;
        enabledCollectors = [
          "systemd"
          "textfile"
        ];
        extraFlags = [ "--collector.textfile.directory=${cfg.textfileDir}" ];
      };
    };

    # The vaultnix binary itself writes the metrics (no shell logic here); root reads the raft
    # directory, writes only the textfile directory, has no network.
    systemd.services.vaultnix-metrics = mkIf (cfg.package != null) {
      description = "vaultnix: certificate-expiry and raft-size metrics for the node exporter";
      after = [ "systemd-tmpfiles-setup.service" ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = lib.escapeShellArgs (
          [
            (lib.getExe' cfg.package "vaultnix")
            "--quiet"
            "metrics"
            "--textfile"
            cfg.textfileDir
          ]
          ++ lib.concatLists (lib.mapAttrsToList (n: f: [ "--cert" "${n}=${f}" ]) cfg.certFiles)
          ++ lib.optionals (cfg.raftDir != null) [
            "--raft-dir"
            cfg.raftDir
          ]
        );
        PrivateNetwork = true;
        ProtectSystem = "strict";
        ReadWritePaths = [ cfg.textfileDir ];
        NoNewPrivileges = true;
        UMask = "0022";
      };
    };
    systemd.timers.vaultnix-metrics = mkIf (cfg.package != null) {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "1min";
        OnUnitActiveSec = cfg.metricsInterval;
      };
    };

    systemd.services.prometheus.restartTriggers = mkIf (cfg.runPrometheus && cfg.alertRulesFile != null) [
      cfg.alertRulesFile
    ];

    networking.firewall.extraInputRules = lib.mkMerge [
      (mkIf (top.firewall.enable && cfg.metricsAllowedCIDRs != [ ]) (
        vlib.nftAcceptFrom {
          cidrs = cfg.metricsAllowedCIDRs;
          ports = [ cfg.metricsPort ];
          comment = "vaultnix: metrics listener from the servers";
        }
      ))
      (mkIf (top.firewall.enable && cfg.nodeExporterAllowedCIDRs != [ ]) (
        vlib.nftAcceptFrom {
          cidrs = cfg.nodeExporterAllowedCIDRs;
          ports = [ cfg.nodeExporterPort ];
          comment = "vaultnix: node exporter from the servers' Prometheus";
        }
      ))
    ];

    systemd.tmpfiles.rules = mkIf (!top.backup.enable) [ "d ${cfg.textfileDir} 0755 root root -" ];
  };
}
