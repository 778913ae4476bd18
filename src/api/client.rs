//! The HTTP client for one node (or the load balancer) and the [`Cluster`] handle built from a plan.
//!
//! Every connection is verified: the only trusted root is the cluster CA (pki/ca.crt), and each node is
//! dialled by its address while the certificate is checked against its DNS name (`https://<fqdn>:8200`
//! resolved to the node's IP with reqwest's `resolve`). There is no "insecure" switch.

use crate::plan::{sock, NodePlan, Plan};
use crate::render::paths;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The default time limit for one request (connect + response). Init and step-down get longer ones.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What went wrong talking to one endpoint. Always printed with the endpoint's name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    ConnectionRefused,
    Timeout,
    /// TLS verification failed; `expected` is the name the certificate had to cover.
    Certificate {
        expected: String,
        detail: String,
    },
    /// Any other transport failure (reset, DNS, protocol).
    Transport(String),
    /// The server answered with an error status; `errors` is its `errors` array, joined.
    Http {
        status: u16,
        errors: String,
    },
    /// The answer was not what the API documents.
    Decode(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The node (or "load balancer") the request went to.
    pub node: String,
    /// `https://<ip>:<port>`: the address actually dialled.
    pub addr: String,
    pub path: String,
    pub kind: ErrorKind,
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// True when the endpoint could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, ErrorKind::ConnectionRefused | ErrorKind::Timeout | ErrorKind::Transport(_))
    }
    pub fn is_certificate(&self) -> bool {
        matches!(self.kind, ErrorKind::Certificate { .. })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): ", self.node, self.addr)?;
        match &self.kind {
            ErrorKind::ConnectionRefused => write!(f, "connection refused (is the server running?)"),
            ErrorKind::Timeout => write!(f, "timed out on {}", self.path),
            ErrorKind::Certificate { expected, detail } => write!(
                f,
                "TLS certificate problem: {detail} (expected a certificate for {expected:?} signed by the cluster CA)"
            ),
            ErrorKind::Transport(m) => write!(f, "{m}"),
            ErrorKind::Http { status, errors } => {
                write!(f, "{} answered {status}", self.path)?;
                if !errors.is_empty() {
                    write!(f, ": {errors}")?;
                }
                Ok(())
            }
            ErrorKind::Decode(m) => write!(f, "unexpected answer to {}: {m}", self.path),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// A raw answer: status and body (JSON when the body parses, else Null).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// The certificate the server presented (DER), when asked for.
    pub peer_cert: Option<Vec<u8>>,
}

/// A client for one endpoint: a node, or the load balancer.
#[derive(Clone)]
pub struct NodeClient {
    pub name: String,
    /// The TLS name checked (the node's fqdn, or the LB hostname).
    pub server_name: String,
    pub ip: IpAddr,
    pub port: u16,
    http: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
    ca_pem: Vec<u8>,
    has_identity: bool,
}

/// Every certificate of the trust file as a root: during a CA rollover flake/pki/ca.crt holds the old
/// and the new CA, and both must be trusted (`Certificate::from_pem` would read the first one only).
pub fn root_certificates(ca_pem: &[u8]) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem)
        .map_err(|e| anyhow::anyhow!("the cluster CA certificate does not parse: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("the cluster CA file holds no PEM certificate");
    }
    Ok(certs)
}

fn build_http(
    name: &str,
    server_name: &str,
    ip: IpAddr,
    port: u16,
    ca_pem: &[u8],
    identity_pem: Option<&[u8]>,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false);
    for ca in root_certificates(ca_pem)? {
        b = b.add_root_certificate(ca);
    }
    let mut b = b
        .resolve(server_name, SocketAddr::new(ip, port))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tls_info(true);
    if let Some(pem) = identity_pem {
        let id = reqwest::Identity::from_pem(pem).map_err(|e| {
            anyhow::anyhow!("the client certificate/key (flake/pki/admin.crt, secrets/admin.key) do not load: {e}")
        })?;
        b = b.identity(id);
    }
    b.build().map_err(|e| anyhow::anyhow!("cannot build the HTTPS client for {name}: {e}"))
}

impl fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("NodeClient")
            .field("name", &self.name)
            .field("server_name", &self.server_name)
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl NodeClient {
    /// `ca_pem` is the only trusted root. `server_name` is checked against the certificate while the
    /// connection goes to `ip:port`.
    pub fn new(name: &str, server_name: &str, ip: IpAddr, port: u16, ca_pem: &[u8]) -> anyhow::Result<NodeClient> {
        let http = build_http(name, server_name, ip, port, ca_pem, None)?;
        Ok(NodeClient {
            name: name.to_string(),
            server_name: server_name.to_string(),
            ip,
            port,
            http,
            token: None,
            timeout: DEFAULT_TIMEOUT,
            ca_pem: ca_pem.to_vec(),
            has_identity: false,
        })
    }

    /// Presents `identity_pem` (client certificate + private key, PEM) in every TLS handshake: the
    /// `cert` auth method reads it from the connection. The listener requests client certificates by
    /// default without requiring them, so clients without one are unaffected.
    pub fn with_identity(mut self, identity_pem: &[u8]) -> anyhow::Result<Self> {
        self.http = build_http(&self.name, &self.server_name, self.ip, self.port, &self.ca_pem, Some(identity_pem))?;
        self.has_identity = true;
        Ok(self)
    }
    pub fn has_identity(&self) -> bool {
        self.has_identity
    }

    /// `POST auth/cert/login` for the role `role`: a token for the client certificate presented in the
    /// handshake (see [`NodeClient::with_identity`]).
    pub async fn login_cert(&self, role: &str) -> ApiResult<crate::api::sys::TokenAuth> {
        let path = "auth/cert/login";
        let v = self.call(Method::POST, path, Some(&serde_json::json!({ "name": role }))).await?;
        self.decode(path, v.get("auth").cloned().unwrap_or(Value::Null))
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// `https://<ip>:<port>`: what is actually dialled (for messages).
    pub fn addr(&self) -> String {
        format!("https://{}", sock(self.ip, self.port))
    }
    /// `https://<server_name>:<port>`: the URL requests use.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.server_name, self.port)
    }

    pub(crate) fn err(&self, path: &str, kind: ErrorKind) -> ApiError {
        ApiError { node: self.name.clone(), addr: self.addr(), path: path.to_string(), kind }
    }

    /// Sends one request and returns whatever status came back (no status check).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> ApiResult<Reply> {
        let url = format!("{}/v1/{}", self.url(), path.trim_start_matches('/'));
        let mut rb = self.http.request(method, &url).timeout(timeout.unwrap_or(self.timeout));
        if let Some(t) = &self.token {
            rb = rb.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| self.err(path, classify(&e, &self.server_name)))?;
        let status = resp.status();
        let peer_cert =
            resp.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate()).map(|c| c.to_vec());
        let bytes = resp.bytes().await.map_err(|e| self.err(path, classify(&e, &self.server_name)))?;
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok(Reply { status, body, peer_cert })
    }

    /// Sends and requires a 2xx status; returns the JSON body (Null for 204).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> ApiResult<Value> {
        self.call_with_timeout(method, path, body, None).await
    }

    pub async fn call_with_timeout(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> ApiResult<Value> {
        let r = self.send(method, path, body, timeout).await?;
        if r.status.is_success() {
            Ok(r.body)
        } else {
            Err(self.err(path, ErrorKind::Http { status: r.status.as_u16(), errors: errors_of(&r.body) }))
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> ApiResult<T> {
        let v = self.call(Method::GET, path, None).await?;
        self.decode(path, v)
    }

    /// GET of an endpoint that wraps its answer in `data` (most authenticated endpoints).
    pub async fn get_data<T: DeserializeOwned>(&self, path: &str) -> ApiResult<T> {
        let v = self.call(Method::GET, path, None).await?;
        let d = v.get("data").cloned().unwrap_or(v);
        self.decode(path, d)
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, path: &str, v: Value) -> ApiResult<T> {
        serde_json::from_value(v).map_err(|e| self.err(path, ErrorKind::Decode(e.to_string())))
    }
}

/// The `errors` array of an error answer, joined with "; ".
pub fn errors_of(body: &Value) -> String {
    match body.get("errors").and_then(|e| e.as_array()) {
        Some(a) => a.iter().filter_map(|e| e.as_str()).map(|s| s.trim()).collect::<Vec<_>>().join("; "),
        None => String::new(),
    }
}

/// Turns a reqwest error into something an operator can act on. rustls errors sit inside an io::Error
/// whose `source()` skips them, so the chain is walked by hand.
fn classify(e: &reqwest::Error, expected: &str) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = Vec::new();
    while let Some(err) = cur {
        text.push(err.to_string());
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ErrorKind::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return ErrorKind::Timeout,
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return tls_kind(tls, expected);
                }
                text.push(inner.to_string());
            }
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return tls_kind(tls, expected);
        }
        cur = err.source();
    }
    let joined = text.join(": ");
    // hyper-rustls does not always keep the rustls error reachable by downcasting; its Debug names
    // survive in the message.
    if joined.contains("certificate") || joined.contains("Certificate") {
        let detail = if joined.contains("NotValidForName") {
            format!("the server's certificate does not cover the name {expected:?}")
        } else if joined.contains("UnknownIssuer") {
            UNKNOWN_ISSUER.to_string()
        } else if joined.contains("Expired") {
            "the server's certificate has expired".to_string()
        } else if joined.contains("NotValidYet") {
            "the server's certificate is not valid yet (check the clock)".to_string()
        } else {
            last(&text)
        };
        return ErrorKind::Certificate { expected: expected.to_string(), detail };
    }
    if joined.contains("Connection refused") {
        return ErrorKind::ConnectionRefused;
    }
    ErrorKind::Transport(last(&text))
}

fn last(text: &[String]) -> String {
    text.last().cloned().unwrap_or_default()
}

const UNKNOWN_ISSUER: &str =
    "the server's certificate is not signed by the cluster CA (flake/pki/ca.crt): wrong CA, or a certificate from another cluster";

fn tls_kind(e: &rustls::Error, expected: &str) -> ErrorKind {
    use rustls::CertificateError as C;
    let detail = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("the server's certificate does not cover the name {expected:?} ({c:?})")
            }
            C::UnknownIssuer => UNKNOWN_ISSUER.into(),
            C::Expired | C::ExpiredContext { .. } => format!("the server's certificate has expired ({c:?})"),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("the server's certificate is not valid yet (check the clock) ({c:?})")
            }
            C::BadSignature => "the server's certificate signature does not verify against the cluster CA".into(),
            other => format!("the server's certificate was rejected ({other:?})"),
        },
        other => format!("TLS handshake failed: {other}"),
    };
    if matches!(e, rustls::Error::InvalidCertificate(_)) {
        ErrorKind::Certificate { expected: expected.to_string(), detail }
    } else {
        ErrorKind::Transport(detail)
    }
}

/// Clients for every node of a plan and for its load balancer, all trusting only the plan's CA.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub plan: Plan,
    pub nodes: Vec<NodeClient>,
    pub lb: NodeClient,
    pub ca_pem: Vec<u8>,
}

impl Cluster {
    /// Builds clients from the plan and the generated output directory (`<out>/pki/ca.crt`).
    pub fn from_out(plan: &Plan, out: &Path) -> anyhow::Result<Cluster> {
        let ca_path = out.join(paths::CA_CRT);
        let ca = std::fs::read(&ca_path).map_err(|e| {
            anyhow::anyhow!("cannot read the cluster CA {}: {e} (run `vaultnix generate` first)", ca_path.display())
        })?;
        Cluster::new(plan, &ca)
    }

    pub fn new(plan: &Plan, ca_pem: &[u8]) -> anyhow::Result<Cluster> {
        let nodes = plan
            .nodes
            .iter()
            .map(|n| NodeClient::new(&n.name, &n.fqdn, n.ip, plan.api_port, ca_pem))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let lb_ip = lb_dial_ip(plan);
        let lb = NodeClient::new("load balancer", &plan.lb.hostname, lb_ip, plan.lb.port, ca_pem)?;
        Ok(Cluster { plan: plan.clone(), nodes, lb, ca_pem: ca_pem.to_vec() })
    }

    /// Presents the client identity (certificate + key PEM) to every node and the load balancer.
    pub fn with_identity(mut self, identity_pem: &[u8]) -> anyhow::Result<Self> {
        self.nodes = self.nodes.into_iter().map(|n| n.with_identity(identity_pem)).collect::<anyhow::Result<_>>()?;
        self.lb = self.lb.with_identity(identity_pem)?;
        Ok(self)
    }

    /// Sets the token on every client.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.set_token(token);
        self
    }
    pub fn set_token(&mut self, token: Option<String>) {
        for n in &mut self.nodes {
            n.set_token(token.clone());
        }
        self.lb.set_token(token);
    }

    pub fn node(&self, name: &str) -> Option<&NodeClient> {
        self.nodes.iter().find(|n| n.name == name)
    }
    pub fn node_plan(&self, name: &str) -> Option<&NodePlan> {
        self.plan.node(name)
    }
}

/// The address clients dial for the LB: its bind address in the lab, else its public/overlay address.
fn lb_dial_ip(plan: &Plan) -> IpAddr {
    if !plan.lb.bind.is_unspecified() {
        plan.lb.bind
    } else {
        plan.lb.public_address.unwrap_or(plan.lb.ip)
    }
}

/// Runs a future to completion from synchronous code, also when called inside a tokio runtime (then on
/// a helper thread), so the CLI, sync tests and async tests can share one API.
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let run = |f: F| -> F::Output {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(f),
            // Building a runtime only fails when the OS refuses threads/fds; nothing sensible to return.
            Err(e) => panic!("cannot start the async runtime: {e}"),
        }
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(|| run(f)).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        })
    } else {
        run(f)
    }
}
