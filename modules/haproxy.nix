# The load balancer: HAProxy passing TLS through (mode tcp) or terminating it (mode http,
# load_balancer.mode = "terminate", certificate installed from the host's secrets before every
# start and reload) to the active server only
# (health check GET /v1/sys/health expects 200, which only the active node answers).
# The configuration is rendered by `vaultnix generate` (haproxy/haproxy.cfg) and deployed as is.
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

  cfg = config.vaultnix.loadBalancer;
  vlib = import ./lib.nix { inherit lib; };
  # Where the rendered configuration's `bind ... ssl crt` reads the certificate + key
  # (render::Layout::haproxy_lb_pem): in the unit's RuntimeDirectory (/run/haproxy, a tmpfs,
  # removed when the unit stops).
  runtimePem = "/run/haproxy/vaultnix-lb.pem";
  # Copies tlsPemFile there, 0600 and owned by HAProxy's user, as root (`+`: outside the unit's
  # sandbox) before the configuration check of every start and every reload. Not LoadCredential:
  # systemd fixes a credential for the unit's lifetime (before systemd 260's RefreshOnReload=), so
  # `systemctl reload` after `vaultnix certs renew` would go on serving the old certificate.
  installPem = lib.concatStringsSep " " [
    "+${pkgs.coreutils}/bin/install -m 0600"
    "-o ${config.services.haproxy.user} -g ${config.services.haproxy.group}"
    "${cfg.tlsPemFile} ${runtimePem}"
  ];
  haproxyConfig = builtins.readFile cfg.configFile;
in
{
  options.vaultnix.loadBalancer = {
    enable = mkEnableOption "the vaultnix HAProxy load balancer on this machine";

    configFile = mkOption {
      type = types.path;
      example = literalExpression "../haproxy/haproxy.cfg";
      description = ''
        The HAProxy configuration rendered by `vaultnix generate`. The NixOS module puts a
        short `global` section (the master socket for seamless reloads) in front of it; the
        rendered file opens its own `global` section, and HAProxy merges both.
      '';
    };

    holdScript = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "../haproxy/hold.lua";
      description = ''
        The Lua action rendered by `vaultnix generate` (haproxy/hold.lua) that holds new
        connections while no server is UP; installed as /etc/haproxy/vaultnix-hold.lua, the
        path the rendered configuration's `lua-load` names.
      '';
    };

    tlsPemFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      example = "/var/lib/vaultnix/secrets/lb.pem";
      description = ''
        In `load_balancer.mode = "terminate"`: the load balancer's certificate and key
        (secrets/lb.pem of `vaultnix generate`, copied to the host like the other secrets).
        Installed as {file}`${runtimePem}` (0600, HAProxy's user), the path the rendered
        configuration binds with, before every start and every reload of the unit, so
        `systemctl reload haproxy` serves a renewed certificate; never copied to the store.
        `null` in passthrough mode.
      '';
    };

    frontendPort = mkOption {
      type = types.port;
      default = 8200;
      description = "Port clients connect to (TLS passthrough to the active server).";
    };

    statsPort = mkOption {
      type = types.nullOr types.port;
      default = 8404;
      description = "Port of HAProxy's read-only statistics page; `null` if the configuration has none.";
    };

    statsOnOverlay = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether the configuration binds the statistics page (plain HTTP, no authentication) on the
        overlay address; the port is then opened on the overlay interface only. Otherwise it is bound
        on loopback and never opened.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to open {option}`frontendPort` to everyone. Set it to `false` to admit only
        {option}`vaultnix.firewall.apiAllowedCIDRs` to the frontend. The statistics page is never
        opened to everyone (see {option}`statsOnOverlay`).
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion =
          cfg.statsPort == null
          || !(lib.any (b: lib.hasInfix b haproxyConfig) [
            "bind *:${toString cfg.statsPort}"
            "bind 0.0.0.0:${toString cfg.statsPort}"
            "bind :::${toString cfg.statsPort}"
          ]);
        message = "vaultnix: ${toString cfg.configFile} binds the unauthenticated stats page (port ${toString cfg.statsPort}) on every address; bind it on loopback or the overlay (spec: load_balancer.stats).";
      }
      {
        assertion = !cfg.statsOnOverlay || config.vaultnix.overlay.interface != null;
        message = "vaultnix.loadBalancer.statsOnOverlay needs an overlay interface (vaultnix.overlay.interface).";
      }
      {
        assertion = config.vaultnix.machine.role == "lb";
        message = "vaultnix.loadBalancer.enable is set on ${config.vaultnix.machine.name}, whose role is ${config.vaultnix.machine.role}.";
      }
      {
        assertion = lib.hasInfix "crt ${runtimePem}" haproxyConfig == (cfg.tlsPemFile != null);
        message = "vaultnix: ${toString cfg.configFile} and vaultnix.loadBalancer.tlsPemFile disagree: a configuration that terminates TLS (crt ${runtimePem}) needs tlsPemFile, and only such a configuration may set it.";
      }
      {
        assertion = lib.hasInfix ":${toString cfg.frontendPort}" haproxyConfig;
        message = "vaultnix: ${toString cfg.configFile} binds no frontend on port ${toString cfg.frontendPort} (vaultnix.loadBalancer.frontendPort).";
      }
    ];

    services.haproxy = {
      enable = true;
      config = haproxyConfig;
    };

    environment.etc."haproxy/vaultnix-hold.lua" = mkIf (cfg.holdScript != null) {
      source = cfg.holdScript;
    };

    systemd.services.haproxy = {
      # A changed configuration is picked up by a hot reload (USR2 to the master, which
      # re-reads /etc/haproxy.cfg) instead of a restart that would drop connections. The CA
      # file too: HAProxy reads its `ca-file` (the health checks' and, in terminate mode, the
      # re-encryption's trust) only when it loads the configuration, so each step of a CA
      # rollover (`vaultnix ca rollover`: bundle old + new, then new only) reaches it by a reload.
      reloadTriggers = [
        config.environment.etc."haproxy.cfg".source
      ]
      ++ lib.optional (cfg.holdScript != null) config.environment.etc."haproxy/vaultnix-hold.lua".source
      ++ lib.optional (config.vaultnix.pki.caCertFile != null) "${config.vaultnix.pki.caCertFile}";
      wants = config.vaultnix.overlay.readyUnits;
      after = config.vaultnix.overlay.readyUnits;
      # Before services.haproxy's own ExecStartPre/ExecReload, whose `haproxy -c` loads the certificate.
      serviceConfig = mkIf (cfg.tlsPemFile != null) {
        ExecStartPre = lib.mkBefore [ installPem ];
        ExecReload = lib.mkBefore [ installPem ];
      };
    };

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ cfg.frontendPort ];
    networking.firewall.interfaces = mkIf (cfg.statsOnOverlay && cfg.statsPort != null) {
      ${config.vaultnix.overlay.interface}.allowedTCPPorts = [ cfg.statsPort ];
    };
  };
}
