# Checks of one machine (a generated nodes/<machine>.nix, or a list of test modules) evaluated
# with vaultnix's modules. Returns a list of { name; ok; detail; } (detail is null when ok).
{
  subset,
  modules,
  system ? "x86_64-linux",
}:
let
  r = import ./eval-node.nix { inherit subset modules system; };
  inherit (r) lib config;
  h = import ./helpers.nix { inherit lib; };

  v = config.vaultnix;
  me = v.machine.name;
  fw = config.networking.firewall;
  services = config.systemd.services;
  unit = if v.server.engine == "vault" then "vault" else "openbao";
  svc = services.${unit};
  json = lib.importJSON v.server.settingsFile;

  secretPaths = [
    v.secretsDir
    v.server.keyFile
    v.server.sealKeyFile
    v.overlay.privateKeyFile
    v.overlay.authKeyFile
    v.backup.tokenFile
  ]
  ++ lib.optionals (v.overlay.kind == "wireguard") (
    lib.mapAttrsToList (_: i: i.privateKeyFile) config.networking.wireguard.interfaces
  )
  ++ lib.optional (v.overlay.kind == "tailscale") config.services.tailscale.authKeyFile
  ++ h.allCredentialSources services;

  # every visible, defined option and free-form value, deep-forced (helpers.nix)
  defined = h.forceDefined r.options config;

  otherInterfacePorts = lib.filterAttrs (n: _: n != v.overlay.interface) (h.interfaceTcpPorts fw);

  common = [
    (h.check "${me}: no failed assertions" (r.failedAssertions == [ ]) r.failedAssertions)
    (h.check "${me}: every secret path is absolute and outside the Nix store" (
      h.secretPathProblems secretPaths == [ ]
    ) (h.secretPathProblems secretPaths))
    (h.check "${me}: CA deployed at /etc/vaultnix/ca.crt" (
      config.environment.etc ? "vaultnix/ca.crt"
    ) (builtins.attrNames config.environment.etc))
    (h.check
      "${me}: config evaluates (${toString (builtins.length defined.forced)} defined options and free-form values forced)"
      (defined.broken == [ ] && defined.forced != [ ])
      {
        inherit (defined) broken;
      }
    )
  ]
  # A generated machine (hardening on) ends with a way in: sshd, root by key; on-prem and Linode
  # machines get no provider keys, so the spec's admin_ssh_keys must reach root's authorized keys.
  ++ lib.optional v.hardening.enable (
    h.check "${me}: a way in: sshd with root's authorized keys (or the provider's on ${v.machine.provider})" (
      config.services.openssh.enable
      && config.services.openssh.settings.PermitRootLogin != "no"
      && (
        config.users.users.root.openssh.authorizedKeys.keys != [ ]
        || builtins.elem v.machine.provider [
          "oracle"
          "digitalocean"
        ]
      )
    ) config.users.users.root.openssh.authorizedKeys
  );

  serverChecks = lib.optionals v.server.enable (
    [
      (h.check "${me}: server JSON deployed unchanged (services.${unit} settings == importJSON settingsFile)" (
        if unit == "openbao" then
          config.services.openbao.settings == json
        else
          lib.hasInfix "vault.json" svc.serviceConfig.ExecStart
          && !(lib.hasInfix "vault.hcl" svc.serviceConfig.ExecStart)
      ) (if unit == "openbao" then config.services.openbao.settings else svc.serviceConfig.ExecStart))
      (h.check "${me}: TLS key (and seal key) via LoadCredential" (
        builtins.elem "tls.key:${v.server.keyFile}" svc.serviceConfig.LoadCredential
        && (
          v.server.sealKeyFile != null
          -> builtins.elem "seal.key:${v.server.sealKeyFile}" svc.serviceConfig.LoadCredential
        )
      ) svc.serviceConfig.LoadCredential)
      (h.check "${me}: seal credentials only as EnvironmentFile from the host" (
        (svc.serviceConfig.EnvironmentFile or null) == v.server.environmentFile
        && (v.server.environmentFile != null -> lib.hasPrefix "/" v.server.environmentFile)
      ) (svc.serviceConfig.EnvironmentFile or null))
      (h.check "${me}: listener key paths point at /run/credentials, not the store" (
        lib.all (
          l: (l ? tls_key_file) -> lib.hasPrefix "/run/credentials/${unit}.service/" l.tls_key_file
        ) (lib.attrValues json.listener)
      ) json.listener)
      (h.check "${me}: no swap, no core dumps for the server unit" (
        svc.serviceConfig.MemorySwapMax == 0 && svc.serviceConfig.LimitCORE == 0
      ) svc.serviceConfig)
      (h.check "${me}: reload (SIGHUP) on certificate change" (
        svc.reloadTriggers != [ ] && svc.serviceConfig ? ExecReload
      ) svc)
      (h.check "${me}: cluster port ${toString v.server.clusterPort} not opened on every interface" (
        !(builtins.elem v.server.clusterPort (h.globalTcpPorts fw))
      ) (h.globalTcpPorts fw))
      (h.check "${me}: API port ${toString v.server.apiPort} not opened on every interface" (
        !(builtins.elem v.server.apiPort (h.globalTcpPorts fw))
      ) (h.globalTcpPorts fw))
    ]
    ++ lib.optionals v.firewall.enable (
      # Only WireGuard's interface is trusted (its peers are the cluster's machines); a tailnet or
      # no overlay admits the other servers by address.
      if v.overlay.kind == "wireguard" then
        [
          (h.check "${me}: cluster port opened on the overlay interface ${v.overlay.interface} only" (
            builtins.elem v.server.clusterPort (h.interfaceTcpPorts fw).${v.overlay.interface} or [ ]
            && lib.all (ps: !(builtins.elem v.server.clusterPort ps)) (lib.attrValues otherInterfacePorts)
            && !(h.rulesMentionPort (fw.extraInputRules or "") v.server.clusterPort)
          ) fw)
        ]
      else
        [
          (h.check "${me}: ${v.overlay.kind} overlay: cluster port admitted only from clusterAllowedCIDRs, no interface opened" (
            # A single server has no peer to admit: the cluster port stays closed everywhere.
            (v.firewall.clusterAllowedCIDRs != [ ] || (v.server.singleNode or false))
            && !(lib.hasInfix "dport { ${toString v.server.clusterPort} }" fw.extraInputRules && v.firewall.clusterAllowedCIDRs == [ ])
            && lib.all (ps: !(builtins.elem v.server.clusterPort ps)) (
              lib.attrValues (h.interfaceTcpPorts fw)
            )
          ) fw)
        ]
    )
    ++ lib.optionals (v.server.enable && v.server.drain.enable) [
      (h.check "${me}: ExecStop drains (vaultnix node drain) with the drain token via LoadCredential" (
        lib.hasSuffix "/bin/vaultnix node drain --config ${v.server.drain.configFile}" svc.serviceConfig.ExecStop
        && lib.elem "drain-token:${v.server.drain.tokenFile}" svc.serviceConfig.LoadCredential
        && svc.serviceConfig.TimeoutStopSec == v.server.drain.timeoutStopSec
        && (lib.importJSON v.server.drain.configFile).timeout_seconds < v.server.drain.timeoutStopSec
      ) svc.serviceConfig)
      (h.check "${me}: the drain agent runs the same config, starts before the server (stops after it), unprivileged" (
        let
          a = services.vaultnix-drain-agent;
        in
        lib.hasSuffix "/bin/vaultnix node agent --config ${v.server.drain.configFile}" a.serviceConfig.ExecStart
        && a.serviceConfig.DynamicUser
        && a.serviceConfig.RuntimeDirectory == "vaultnix-drain-agent"
        && a.serviceConfig.CapabilityBoundingSet == ""
        && lib.elem "multi-user.target" a.wantedBy
        && lib.elem "vaultnix-drain-agent.service" svc.after
        && lib.elem "vaultnix-drain-agent.service" svc.wants
        && v.server.drain.agentPort == (lib.importJSON v.server.drain.configFile).agent.port
        # The stop path talks to it where the JSON says, inside its RuntimeDirectory.
        && (lib.importJSON v.server.drain.configFile).agent.control_socket == "/run/vaultnix-drain-agent/control.sock"
        && (lib.importJSON v.server.drain.configFile).agent.port != null
      ) services.vaultnix-drain-agent.serviceConfig)
      (h.check "${me}: the drain token is renewed daily by its own unit (credential, never the store)" (
        let
          r = services.vaultnix-drain-token-renew;
        in
        lib.hasSuffix "/bin/vaultnix node drain --renew-token --config ${v.server.drain.configFile}" r.serviceConfig.ExecStart
        && r.serviceConfig.LoadCredential == [ "drain-token:${v.server.drain.tokenFile}" ]
        && r.serviceConfig.DynamicUser
        && config.systemd.timers.vaultnix-drain-token-renew.timerConfig.OnCalendar == "daily"
        && lib.elem "timers.target" config.systemd.timers.vaultnix-drain-token-renew.wantedBy
      ) services.vaultnix-drain-token-renew.serviceConfig)
    ]
    ++ lib.optionals (v.server.enable && v.server.drain.enable && v.firewall.enable) [
      (h.check "${me}: drain agent port admitted from agentAllowedCIDRs only (no interface opens it)" (
        v.firewall.agentAllowedCIDRs != [ ]
        && lib.all (c: lib.hasInfix c fw.extraInputRules) v.firewall.agentAllowedCIDRs
        && lib.hasInfix "dport { ${toString v.server.drain.agentPort} }" fw.extraInputRules
        && !(lib.elem v.server.drain.agentPort fw.allowedTCPPorts)
        && lib.all (ps: !(builtins.elem v.server.drain.agentPort ps)) (lib.attrValues (h.interfaceTcpPorts fw))
      ) fw.extraInputRules)
    ]
    ++ lib.optionals v.backup.enable [
      (h.check "${me}: backup service + timer with token via LoadCredential" (
        config.systemd.timers ? vaultnix-backup
        && services.vaultnix-backup.serviceConfig.LoadCredential == [ "backup-token:${v.backup.tokenFile}" ]
          ++ lib.optional (v.backup.resticPasswordFile != null) "restic-password:${v.backup.resticPasswordFile}"
          ++ lib.optional (v.backup.resticEnvironmentFile != null) "restic-env:${v.backup.resticEnvironmentFile}"
        && lib.hasSuffix "/bin/vaultnix backup run --config /etc/vaultnix/backup.json" services.vaultnix-backup.serviceConfig.ExecStart
        && config.environment.etc."vaultnix/backup.json".source == v.backup.configFile
        # [backup.restic]: restic on the unit's PATH, the password a credential (never a store path).
        && (v.backup.resticPasswordFile != null) == lib.elem config.vaultnix.backup.resticPackage services.vaultnix-backup.path
      ) services.vaultnix-backup)
    ]
    ++ lib.optionals v.monitoring.enable [
      (h.check "${me}: Prometheus runs the rendered prometheus.yml unchanged, syntax-only build check" (
        config.services.prometheus.configText == builtins.readFile v.monitoring.configFile
        && config.services.prometheus.checkConfig == "syntax-only"
        && config.environment.etc."vaultnix/prometheus/alerts.yml".source == v.monitoring.alertRulesFile
      ) config.services.prometheus.checkConfig)
      (h.check "${me}: metrics port admitted from the servers only" (
        v.monitoring.metricsAllowedCIDRs != [ ]
        && lib.all (c: lib.hasInfix c config.networking.firewall.extraInputRules) v.monitoring.metricsAllowedCIDRs
        && lib.hasInfix "dport { ${toString v.monitoring.metricsPort} }" config.networking.firewall.extraInputRules
        && !(lib.elem v.monitoring.metricsPort config.networking.firewall.allowedTCPPorts)
      ) config.networking.firewall.extraInputRules)
    ]
  );

  lbChecks = lib.optionals v.loadBalancer.enable [
    (h.check "${me}: haproxy.cfg deployed unchanged after the module's global section" (
      lib.hasSuffix (builtins.readFile v.loadBalancer.configFile + "\n")
        config.environment.etc."haproxy.cfg".source.text
    ) config.environment.etc."haproxy.cfg".source.text)
    (h.check "${me}: haproxy reloads when its configuration changes" (
      services.haproxy.reloadTriggers != [ ]
    ) services.haproxy)
    (h.check "${me}: haproxy reloads when the CA bundle changes (each CA rollover step)" (
      lib.elem "${v.pki.caCertFile}" services.haproxy.reloadTriggers
    ) services.haproxy.reloadTriggers)
    (h.check "${me}: frontend port open" (builtins.elem v.loadBalancer.frontendPort (
      h.globalTcpPorts fw
    )) fw)
    (h.check "${me}: stats page never open to everyone; on the overlay interface only when bound there" (
      v.loadBalancer.statsPort == null
      || (
        !(builtins.elem v.loadBalancer.statsPort (h.globalTcpPorts fw))
        && (
          builtins.elem v.loadBalancer.statsPort (
            if v.overlay.interface == null then [ ] else fw.interfaces.${v.overlay.interface}.allowedTCPPorts or [ ]
          )
          == v.loadBalancer.statsOnOverlay
        )
      )
    ) fw)
  ]
  ++ lib.optionals (v.loadBalancer.enable && v.monitoring.enable) [
    (h.check "${me}: LB node exporter (textfile collector) on a non-public address, no Prometheus" (
      config.services.prometheus.exporters.node.enable
      && config.services.prometheus.exporters.node.listenAddress == v.monitoring.nodeExporterAddress
      && !(lib.elem v.monitoring.nodeExporterAddress [ "" "0.0.0.0" "::" "[::]" "*" ])
      # with an overlay, exactly the overlay address (the servers scrape it through the tunnel)
      && (v.overlay.interface == null || v.overlay.address == null || v.overlay.address == v.monitoring.nodeExporterAddress)
      && lib.elem "--collector.textfile.directory=${v.monitoring.textfileDir}" config.services.prometheus.exporters.node.extraFlags
      && !config.services.prometheus.enable
    ) config.services.prometheus.exporters.node.listenAddress)
    (h.check "${me}: LB node exporter port admitted from the servers only, never open publicly" (
      v.monitoring.nodeExporterAllowedCIDRs != [ ]
      && lib.all (c: lib.hasInfix c config.networking.firewall.extraInputRules) v.monitoring.nodeExporterAllowedCIDRs
      && lib.hasInfix "dport { ${toString v.monitoring.nodeExporterPort} }" config.networking.firewall.extraInputRules
      && !(builtins.elem v.monitoring.nodeExporterPort (h.globalTcpPorts fw))
      && !config.services.prometheus.exporters.node.openFirewall
    ) config.networking.firewall.extraInputRules)
  ];
  rehearsalChecks = lib.optionals v.rehearsal.enable [
      (h.check "${me}: restore rehearsal service + timer, secrets via LoadCredential, restic and the server on PATH" (
        config.systemd.timers ? vaultnix-rehearse
        && lib.hasSuffix "/bin/vaultnix backup rehearse --config /etc/vaultnix/rehearsal.json" services.vaultnix-rehearse.serviceConfig.ExecStart
        && lib.elem "restic-password:${v.rehearsal.passwordFile}" services.vaultnix-rehearse.serviceConfig.LoadCredential
        && lib.elem "backup-token:${v.rehearsal.tokenFile}" services.vaultnix-rehearse.serviceConfig.LoadCredential
        && lib.all (c: !(lib.hasInfix "/nix/store" c)) services.vaultnix-rehearse.serviceConfig.LoadCredential
        && lib.elem config.vaultnix.rehearsal.resticPackage services.vaultnix-rehearse.path
        && lib.elem config.vaultnix.rehearsal.serverPackage services.vaultnix-rehearse.path
      ) services.vaultnix-rehearse)
  ];
in
map (c: c // { detail = if c.ok then null else c.detail; }) (common ++ serverChecks ++ lbChecks ++ rehearsalChecks)
