# The OpenBao (default) or HashiCorp Vault server of a vaultnix cluster, plus the options
# every vaultnix machine shares (cluster name, machine identity, secrets directory, CA).
#
# The server configuration is rendered once, in Rust, as JSON (`nodes/<node>.server.json`)
# and deployed unchanged: this module never adds, drops or rewrites a key of it. It only
# puts the files that JSON refers to where it expects them:
#   /etc/vaultnix/ca.crt, /etc/vaultnix/tls.crt        public, from the store
#   /run/credentials/<unit>/tls.key, .../seal.key      systemd LoadCredential, from secretsDir
#   /var/lib/<engine>                                  raft data (StateDirectory)
#   /var/log/<engine>/audit.log                        audit log (LogsDirectory)
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
    mkMerge
    mkOption
    types
    ;
  vlib = import ./lib.nix { inherit lib; };

  top = config.vaultnix;
  cfg = config.vaultnix.server;

  unit = vlib.unitOf cfg.engine;
  credentialsDir = "/run/credentials/${unit}.service";
  settings = lib.importJSON cfg.settingsFile;
  drainSettings = lib.importJSON cfg.drain.configFile;

  listeners = lib.attrValues (settings.listener or { });
  keyFilesInJson = lib.filter (k: k != null) (map (l: l.tls_key_file or null) listeners);
  usesStaticSeal = settings ? seal && (settings.seal ? static);
  usesPreviousSealKey = usesStaticSeal && (settings.seal.static ? previous_key);

  envPrefix = if cfg.engine == "vault" then "VAULT" else "BAO";
  enginePackage = if cfg.engine == "vault" then config.services.vault.package else config.services.openbao.package;
in
{
  options.vaultnix = {
    clusterName = mkOption {
      type = types.strMatching "[a-z0-9][a-z0-9-]*";
      example = "hybrid";
      description = "Name of the cluster this machine belongs to (the spec's `cluster.name`).";
    };

    machine = {
      name = mkOption {
        type = types.strMatching "[a-zA-Z0-9][a-zA-Z0-9-]*";
        example = "vault-1";
        description = "Name of this machine in the spec; also its host name.";
      };
      role = mkOption {
        type = types.enum [
          "server"
          "lb"
        ];
        description = "Whether this machine runs a server (`server`) or the load balancer (`lb`).";
      };
      provider = mkOption {
        type = types.enum [
          "onprem"
          "oracle"
          "linode"
          "digitalocean"
        ];
        description = "Where the machine runs; selects the image profile in `lib.mkCluster`.";
      };
      system = mkOption {
        type = types.enum [
          "x86_64-linux"
          "aarch64-linux"
        ];
        default = "x86_64-linux";
        description = "Nix system of the machine.";
      };
      fqdn = mkOption {
        type = types.str;
        example = "vault-1.vault.internal";
        description = "Fully qualified name of the machine, as it appears in its certificate.";
      };
    };

    secretsDir = mkOption {
      type = vlib.secretPath;
      default = "/var/lib/vaultnix/secrets";
      description = ''
        Root-only directory holding this machine's secrets (`tls.key`, `seal.key`, `wg.key`,
        `backup-token`). vaultnix never copies them anywhere: put them in place with agenix,
        sops-nix or by hand. Secrets are referenced by path strings only, never via the store.
      '';
    };

    pki = {
      caCertFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = literalExpression "../pki/ca.crt";
        description = ''
          The cluster CA certificate (public). Installed as {file}`/etc/vaultnix/ca.crt`,
          where the server configuration, HAProxy and the backup job expect it.
        '';
      };
      trustCA = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to add the cluster CA to the system trust store ({option}`security.pki.certificateFiles`).";
      };
    };

    server = {
      enable = mkEnableOption "the vaultnix OpenBao/Vault server on this machine";

      engine = mkOption {
        type = types.enum [
          "openbao"
          "vault"
        ];
        default = "openbao";
        description = ''
          Which server to run. `openbao` (MPL-2.0) uses {option}`services.openbao`.
          `vault` uses {option}`services.vault` and is unfree (BUSL-1.1): allow it with
          `nixpkgs.config.allowUnfreePredicate`.
        '';
      };

      settingsFile = mkOption {
        type = types.path;
        example = literalExpression "./vault-1.server.json";
        description = ''
          The server configuration rendered by `vaultnix generate` (JSON). It is the single
          source of truth and is deployed unchanged.
        '';
      };

      certFile = mkOption {
        type = types.path;
        example = literalExpression "../pki/vault-1.crt";
        description = "This node's TLS certificate (public). Installed as {file}`/etc/vaultnix/tls.crt`.";
      };

      drain = {
        enable = mkEnableOption ''
          the planned step-down on stop: the unit's `ExecStop` runs `vaultnix node drain`, so
          `systemctl stop` or a reboot of the active node first steps it down (verified), waits for
          the new leader and the load balancer's fall window, then lets systemd stop the server'';
        package = mkOption {
          type = types.package;
          defaultText = literalExpression "vaultnix.packages.\${system}.vaultnix (set by vaultnix.lib.mkCluster)";
          description = "The vaultnix package whose binary runs the drain.";
        };
        configFile = mkOption {
          type = types.nullOr types.path;
          default = null;
          example = literalExpression "./vault-1.drain.json";
          description = "The drain configuration rendered by `vaultnix generate` (nodes/<node>.drain.json).";
        };
        tokenFile = mkOption {
          type = vlib.secretPath;
          default = "${top.secretsDir}/drain-token";
          defaultText = literalExpression ''"''${config.vaultnix.secretsDir}/drain-token"'';
          description = ''
            A token of policy `vaultnix-drain` (`sys/step-down` only; `vaultnix bootstrap
            --drain-token` creates it). Passed with `LoadCredential` as `drain-token`; never in the store.
          '';
        };
        timeoutStopSec = mkOption {
          type = types.ints.positive;
          default = 90;
          description = "The unit's TimeoutStopSec: above the drain's own bound (timeout_seconds, 60 s rendered).";
        };
        agentPort = mkOption {
          type = types.nullOr types.port;
          readOnly = true;
          default = if cfg.drain.configFile != null then drainSettings.agent.port or null else null;
          defaultText = literalExpression "(lib.importJSON configFile).agent.port";
          description = ''
            The port of this node's drain agent (`vaultnix node agent`, unit `vaultnix-drain-agent`), from
            the drain configuration: HAProxy's `agent-check` polls it, and the stop path drains the node at
            the load balancer through it before the step-down. Opened to the load balancer only
            ({option}`vaultnix.firewall.agentAllowedCIDRs`).
          '';
        };
      };

      keyFile = mkOption {
        type = vlib.secretPath;
        default = "${top.secretsDir}/tls.key";
        defaultText = literalExpression ''"''${config.vaultnix.secretsDir}/tls.key"'';
        description = ''
          This node's TLS private key on the host. Passed to the server with systemd
          `LoadCredential` as {file}`/run/credentials/<unit>/tls.key`; never copied to the store.
        '';
      };

      sealKeyFile = mkOption {
        type = types.nullOr vlib.secretPath;
        default = null;
        example = "/var/lib/vaultnix/secrets/seal.key";
        description = ''
          Key of OpenBao's static seal (auto-unseal without a KMS), when the configuration uses
          one. Passed as credential {file}`/run/credentials/<unit>/seal.key`. `null` for Shamir.
        '';
      };

      environmentFile = mkOption {
        type = types.nullOr vlib.secretPath;
        default = null;
        example = "/run/secrets/seal.env";
        description = ''
          Root-only file on the host with the seal's credentials as environment variables
          (`AWS_SESSION_TOKEN=…`), given to the server unit as systemd `EnvironmentFile` (read by
          PID 1 at start; never copied to the store). The spec's `unseal.environment_file`.
        '';
      };

      previousSealKeyFile = mkOption {
        type = types.nullOr vlib.secretPath;
        default = null;
        example = "/var/lib/vaultnix/secrets/seal.hybrid-1.key";
        description = ''
          During a static seal key rotation (`vaultnix generate --rotate-seal-key`): the key the
          data was sealed with until now, rendered as the seal's `previous_key`. Passed as
          credential {file}`/run/credentials/<unit>/seal.previous.key`.
        '';
      };

      apiPort = mkOption {
        type = types.port;
        default = 8200;
        description = "Port of the API listener (clients, the load balancer, raft joins).";
      };

      clusterPort = mkOption {
        type = types.port;
        default = 8201;
        description = "Port of the cluster listener (raft and request forwarding between servers).";
      };

      version = mkOption {
        type = types.nullOr (types.strMatching "[0-9]+\\.[0-9]+\\.[0-9]+.*");
        default = null;
        example = "2.7.2";
        description = ''
          Engine version the server configuration was rendered for (the spec's
          `cluster.version`). The deployed package ({option}`services.openbao.package` or
          {option}`services.vault.package`) must have this version: the server only warns on
          keys it does not know, so a configuration for another version silently loses
          features. `null` skips the check.
        '';
      };

      allowVersionMismatch = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Deploy even when the package's version differs from {option}`vaultnix.server.version`
          (e.g. a patch release of the package you have checked against the rendered file).
        '';
      };

      singleNode = mkOption {
        type = types.bool;
        default = false;
        description = ''
          This server is the whole cluster (the spec's `cluster.allow_single_node`): there
          are no raft peers to admit, so no overlay and no {option}`vaultnix.firewall.clusterAllowedCIDRs` are needed.
        '';
      };
    };
  };

  config = mkMerge [
    (mkIf (cfg.enable || top.loadBalancer.enable) {
      assertions = [
        {
          assertion = top.pki.caCertFile != null;
          message = "vaultnix: set vaultnix.pki.caCertFile on ${top.machine.name} (servers and the load balancer verify TLS with it).";
        }
      ];
      environment.etc."vaultnix/ca.crt" = mkIf (top.pki.caCertFile != null) { source = top.pki.caCertFile; };
      security.pki.certificateFiles = mkIf (top.pki.trustCA && top.pki.caCertFile != null) [
        top.pki.caCertFile
      ];
      # Above mkDefault: cloud profiles (digital-ocean) set an empty mkDefault host name.
      networking.hostName = lib.mkOverride 900 top.machine.name;
      systemd.tmpfiles.rules = [ "d ${top.secretsDir} 0700 root root -" ];
    })

    (mkIf cfg.enable (mkMerge [
      {
        assertions = [
          {
            assertion =
              !cfg.drain.enable
              || (cfg.drain.configFile != null && (lib.importJSON cfg.drain.configFile).token_file == "${credentialsDir}/drain-token");
            message = "vaultnix.server.drain.configFile: token_file must be the unit's credential ${credentialsDir}/drain-token (rendered for engine ${cfg.engine}?).";
          }
          {
            assertion = top.machine.role == "server";
            message = "vaultnix.server.enable is set on ${top.machine.name}, whose role is ${top.machine.role}.";
          }
          {
            assertion = lib.all (k: k == "${credentialsDir}/tls.key") keyFilesInJson && keyFilesInJson != [ ];
            message = ''
              vaultnix: ${toString cfg.settingsFile} must read its TLS key from ${credentialsDir}/tls.key
              (systemd LoadCredential), found: ${builtins.toJSON keyFilesInJson}. Was it rendered for engine ${cfg.engine}?
            '';
          }
          {
            assertion = (settings.storage.raft.path or null) == "/var/lib/${unit}";
            message = "vaultnix: raft path in ${toString cfg.settingsFile} must be /var/lib/${unit} (the unit's StateDirectory).";
          }
          {
            # OpenBao 2.7.2 exits at start on it ("Failed to initiate raft retry join, \"invalid
            # retry_join config\""); a server that joins nobody has no retry_join at all.
            assertion = (settings.storage.raft.retry_join or null) != [ ];
            message = "vaultnix: ${toString cfg.settingsFile} sets storage.raft.retry_join to an empty list, which ${cfg.engine} refuses at start; leave retry_join out of a server that joins nobody.";
          }
          {
            assertion = usesStaticSeal -> cfg.sealKeyFile != null;
            message = "vaultnix: ${toString cfg.settingsFile} uses a static seal; set vaultnix.server.sealKeyFile.";
          }
          {
            assertion =
              cfg.version != null && !cfg.allowVersionMismatch -> lib.getVersion enginePackage == cfg.version;
            message = ''
              vaultnix: ${top.machine.name}'s server configuration was rendered for ${cfg.engine} ${toString cfg.version}
              (cluster.version in the spec), but the package to deploy is ${lib.getName enginePackage} ${lib.getVersion enginePackage}.
              Set services.${unit}.package to a ${toString cfg.version} build, or change cluster.version and re-run
              `vaultnix generate`, or set vaultnix.server.allowVersionMismatch = true if you checked the difference.
            '';
          }
          {
            assertion = usesPreviousSealKey == (cfg.previousSealKeyFile != null);
            message = "vaultnix: ${toString cfg.settingsFile} ${
              if usesPreviousSealKey then "names a previous static seal key; set" else "names no previous static seal key; unset"
            } vaultnix.server.previousSealKeyFile.";
          }
          {
            assertion = cfg.sealKeyFile != null -> cfg.engine == "openbao";
            message = "vaultnix: the static seal (vaultnix.server.sealKeyFile) is an OpenBao feature.";
          }
        ];

        environment.etc."vaultnix/tls.crt".source = cfg.certFile;

        # For operators on the host: `bao status` works without flags.
        environment.variables = {
          "${envPrefix}_ADDR" = settings.api_addr or "https://127.0.0.1:${toString cfg.apiPort}";
          "${envPrefix}_CACERT" = "/etc/vaultnix/ca.crt";
        };

        systemd.services.${unit} = {
          # The upstream units set restartIfChanged = false (a restart seals a Shamir node), so
          # `nixos-rebuild switch` leaves them alone. A new certificate or CA only needs a
          # SIGHUP (ExecReload upstream), which reloads the listener's TLS material; the
          # triggers make switch-to-configuration reload the unit when they change.
          reloadTriggers = [
            "${cfg.certFile}"
          ]
          ++ lib.optional (top.pki.caCertFile != null) "${top.pki.caCertFile}";
          wants = top.overlay.readyUnits;
          after = top.overlay.readyUnits;
          serviceConfig = {
            # Credentials are read by PID 1 as root and exposed to the (dynamic) service user
            # only; the key files stay root-only in secretsDir and never enter the store.
            LoadCredential = [
              "tls.key:${cfg.keyFile}"
            ]
            ++ lib.optional (cfg.sealKeyFile != null) "seal.key:${cfg.sealKeyFile}"
            ++ lib.optional (cfg.previousSealKeyFile != null) "seal.previous.key:${cfg.previousSealKeyFile}"
            ++ lib.optional cfg.drain.enable "drain-token:${cfg.drain.tokenFile}";
            # systemd runs ExecStop before it signals the server: the active node steps down first.
            # `node drain` is bounded and always exits 0, so a stop is never blocked or failed.
            ExecStop = mkIf cfg.drain.enable "${lib.getExe' cfg.drain.package "vaultnix"} node drain --config ${cfg.drain.configFile}";
            LogsDirectory = unit;
            LogsDirectoryMode = "0700";
            # Neither upstream module has an option for it (services.openbao / services.vault set no
            # EnvironmentFile), so it is set on the unit directly.
            EnvironmentFile = mkIf (cfg.environmentFile != null) cfg.environmentFile;
            # No swap and no core dumps (they could hold unsealed keys): both upstream units set
            # LimitCORE = 0 and services.openbao also MemorySwapMax = 0; defining them here again
            # at the same priority would be a duplicate definition (tests/nix/units.nix).
          };
        };
      }

      (mkIf cfg.drain.enable {
        # services.vault sets TimeoutStopSec too: ours wins, at a priority of its own.
        systemd.services.${unit} = {
          serviceConfig.TimeoutStopSec = lib.mkOverride 90 cfg.drain.timeoutStopSec;
          # The agent starts before the server and so stops after it: it still answers the load
          # balancer while the server's ExecStop drains the node through it.
          wants = [ "vaultnix-drain-agent.service" ];
          after = [ "vaultnix-drain-agent.service" ];
        };
        # The drain token is periodic (768 h) and only a stop of the active node uses it: renewed daily
        # so that it never expires on a node that was not active at a stop for 32 days.
        systemd.services.vaultnix-drain-token-renew = {
          description = "Renew the drain token of ${unit}'s stop path";
          wants = top.overlay.readyUnits;
          after = top.overlay.readyUnits;
          serviceConfig = {
            Type = "oneshot";
            ExecStart = "${lib.getExe' cfg.drain.package "vaultnix"} node drain --renew-token --config ${cfg.drain.configFile}";
            LoadCredential = [ "drain-token:${cfg.drain.tokenFile}" ];
            DynamicUser = true;
            CapabilityBoundingSet = "";
            NoNewPrivileges = true;
            PrivateDevices = true;
            PrivateTmp = true;
            ProtectHome = true;
            ProtectSystem = "strict";
            RestrictAddressFamilies = [
              "AF_INET"
              "AF_INET6"
            ];
          };
        };
        systemd.timers.vaultnix-drain-token-renew = {
          wantedBy = [ "timers.target" ];
          timerConfig = {
            OnCalendar = "daily";
            RandomizedDelaySec = "1h";
            Persistent = true;
          };
        };
        # HAProxy's agent-check target (ops/agent.rs). Reads nothing secret; the stop path reaches it
        # on control.sock in its RuntimeDirectory, where only root or the server's own user may drain
        # (checked per request with SO_PEERCRED against the server's process).
        systemd.services.vaultnix-drain-agent = {
          description = "vaultnix drain agent of ${unit} (HAProxy agent-check)";
          wantedBy = [ "multi-user.target" ];
          wants = top.overlay.readyUnits;
          after = top.overlay.readyUnits;
          serviceConfig = {
            ExecStart = "${lib.getExe' cfg.drain.package "vaultnix"} node agent --config ${cfg.drain.configFile}";
            DynamicUser = true;
            RuntimeDirectory = "vaultnix-drain-agent";
            RuntimeDirectoryMode = "0755";
            # It binds the node's (overlay) address, which may come up after it.
            Restart = "always";
            RestartSec = 1;
            CapabilityBoundingSet = "";
            LockPersonality = true;
            NoNewPrivileges = true;
            PrivateDevices = true;
            PrivateTmp = true;
            ProtectClock = true;
            ProtectControlGroups = true;
            ProtectHome = true;
            ProtectHostname = true;
            ProtectKernelLogs = true;
            ProtectKernelModules = true;
            ProtectKernelTunables = true;
            ProtectSystem = "strict";
            RestrictAddressFamilies = [
              "AF_INET"
              "AF_INET6"
              "AF_UNIX"
            ];
            RestrictNamespaces = true;
            RestrictRealtime = true;
            SystemCallArchitectures = "native";
            SystemCallFilter = [
              "@system-service"
              "~@privileged"
            ];
          };
        };
      })

      (mkIf (cfg.engine == "openbao") {
        services.openbao = {
          enable = true;
          inherit settings;
        };
      })

      (mkIf (cfg.engine == "vault") {
        # services.vault builds its configuration from HCL strings and always writes its own
        # `listener "tcp"` and `storage` blocks; passing our JSON via extraSettingsPaths would
        # give the server two listeners and two storage stanzas. So the module keeps providing
        # the user, StateDirectory (/var/lib/vault via storagePath), hardening and ExecReload,
        # and ExecStart is replaced to read only our JSON, byte for byte (writeText of the
        # file's contents: the `.json` suffix is what makes Vault parse it as JSON).
        services.vault = {
          enable = true;
          storageBackend = "raft";
          storagePath = "/var/lib/vault";
        };
        environment.systemPackages = [ config.services.vault.package ];
        # services.vault sets LimitCORE = 0 but not MemorySwapMax (services.openbao sets both).
        systemd.services.vault.serviceConfig.MemorySwapMax = 0;
        systemd.services.vault.serviceConfig.ExecStart = lib.mkForce (
          lib.escapeShellArgs [
            (lib.getExe' config.services.vault.package "vault")
            "server"
            "-config"
            (pkgs.writeText "vault.json" (builtins.readFile cfg.settingsFile))
          ]
        );
      })
    ]))
  ];
}
