# Prometheus on the server: scrapes /v1/sys/metrics?format=prometheus of every server over
# TLS (verified with the cluster CA), the local node exporter (with the textfile collector
# that carries the backup job's metrics), and loads the alert rules rendered by vaultnix.
# Every server runs its own Prometheus, so the cluster stays observable from any survivor.
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
    optional
    types
    ;
  vlib = import ./lib.nix { inherit lib; };

  cfg = config.vaultnix.monitoring;
  top = config.vaultnix;
  tokenCredential = "/run/credentials/prometheus.service/metrics-token";
  labels = {
    cluster = top.clusterName;
  };
in
{
  options.vaultnix.monitoring = {
    enable = mkEnableOption "Prometheus, the node exporter and vaultnix's alert rules";

    scrapeTargets = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "10.88.0.1:8200"
        "10.88.0.2:8200"
      ];
      description = "`address:port` of every server's API listener, scraped over HTTPS.";
    };

    tokenFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      description = ''
        Token sent when scraping the API listeners. `null` if the listeners allow
        unauthenticated metrics (`telemetry.unauthenticated_metrics_access`). Passed with
        `LoadCredential`, never via the store.
      '';
    };

    localMetricsAddress = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "127.0.0.1:9102";
      description = "A plain-HTTP, metrics-only listener of the local server, scraped in addition (job `vaultnix-local`).";
    };

    alertRulesFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "../monitoring/alerts.yml";
      description = "Prometheus alerting rules rendered by `vaultnix generate`.";
    };

    scrapeInterval = mkOption {
      type = types.str;
      default = "15s";
      description = "Prometheus scrape interval.";
    };

    textfileDir = mkOption {
      type = types.str;
      default = "/var/lib/vaultnix/textfile";
      description = "Directory of the node exporter's textfile collector (vaultnix_backup_* metrics).";
    };

    nodeExporterPort = mkOption {
      type = types.port;
      default = 9100;
      description = "Port of the node exporter (listens on 127.0.0.1 only).";
    };
  };

  config = mkIf cfg.enable {
    services.prometheus = {
      enable = true;
      globalConfig.scrape_interval = cfg.scrapeInterval;
      ruleFiles = optional (cfg.alertRulesFile != null) cfg.alertRulesFile;
      scrapeConfigs = [
        (
          {
            job_name = "vaultnix";
            scheme = "https";
            metrics_path = "/v1/sys/metrics";
            params.format = [ "prometheus" ];
            tls_config.ca_file = "/etc/vaultnix/ca.crt";
            static_configs = [
              {
                targets = cfg.scrapeTargets;
                inherit labels;
              }
            ];
          }
          // lib.optionalAttrs (cfg.tokenFile != null) {
            authorization.credentials_file = tokenCredential;
          }
        )
        {
          job_name = "node";
          static_configs = [
            {
              targets = [ "127.0.0.1:${toString cfg.nodeExporterPort}" ];
              labels = labels // {
                node = top.machine.name;
              };
            }
          ];
        }
      ]
      ++ optional (cfg.localMetricsAddress != null) {
        job_name = "vaultnix-local";
        metrics_path = "/v1/sys/metrics";
        params.format = [ "prometheus" ];
        static_configs = [
          {
            targets = [ cfg.localMetricsAddress ];
            labels = labels // {
              node = top.machine.name;
            };
          }
        ];
      };

      exporters.node = {
        enable = true;
        listenAddress = "127.0.0.1";
        port = cfg.nodeExporterPort;
        enabledCollectors = [
          "systemd"
          "textfile"
        ];
        extraFlags = [ "--collector.textfile.directory=${cfg.textfileDir}" ];
      };
    };

    systemd.services.prometheus.serviceConfig.LoadCredential = mkIf (cfg.tokenFile != null) [
      "metrics-token:${cfg.tokenFile}"
    ];

    systemd.tmpfiles.rules = mkIf (!top.backup.enable) [ "d ${cfg.textfileDir} 0755 root root -" ];
  };
}
