//! `operator generate-root`: a new root token from a threshold of unseal (or recovery) key shares, for
//! when the root token was revoked (`bootstrap --revoke-root`) and root is needed again. The token comes
//! back XOR-ed with a one-time password only this process knows.
//!
//! OpenBao 2.7 disables the unauthenticated `sys/generate-root/*` endpoints by default (listener option
//! `disable_unauthed_generate_root_endpoints`; they answer 405 "unsupported operation"). The
//! authenticated `sys/generate-root-token/*` endpoints need a token allowed to use them (the admin
//! token `bootstrap --admin-token` creates). Without a token the old unauthenticated paths are tried.

use crate::ops::live::Http;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct GenerateRootOptions {
    /// The active node (or any node: a standby forwards).
    pub address: String,
    pub ca_pem: Vec<u8>,
    /// A token with sudo on sys/generate-root-token (e.g. the admin token).
    pub token: Option<String>,
    pub timeout: std::time::Duration,
}

/// Runs a whole generate-root attempt with `keys` (at least the threshold). Any attempt already in
/// progress is cancelled first. Returns the new root token (the caller must keep it out of logs).
pub async fn generate_root(o: &GenerateRootOptions, keys: &[String]) -> Result<String> {
    let http = Http::new(&o.ca_pem, o.timeout)?;
    let base = o.address.as_str();
    let tok = o.token.as_deref();
    let prefix = if tok.is_some() { "/v1/sys/generate-root-token" } else { "/v1/sys/generate-root" };
    let attempt = format!("{prefix}/attempt");
    let update = format!("{prefix}/update");
    // Authenticated endpoints wrap their answer in `data`.
    let data = |v: serde_json::Value| v.get("data").cloned().filter(|d| d.is_object()).unwrap_or(v);
    let _ = http.json(Method::DELETE, base, &attempt, tok, None).await;
    let (s, v) = http.json(Method::PUT, base, &attempt, tok, Some(json!({}))).await?;
    if !s.is_success() {
        let hint = if s.as_u16() == 405 && tok.is_none() {
            " (OpenBao 2.7 disables the unauthenticated endpoints: pass a token with sudo, e.g. the admin token)"
        } else {
            ""
        };
        bail!("generate-root: starting the attempt answered {s}: {v}{hint}");
    }
    let v = data(v);
    let nonce = v.get("nonce").and_then(|x| x.as_str()).ok_or_else(|| anyhow!("no nonce in the answer"))?.to_string();
    let otp = v.get("otp").and_then(|x| x.as_str()).ok_or_else(|| anyhow!("no otp in the answer"))?.to_string();
    let mut encoded = None;
    for k in keys {
        let (s, v) = http.json(Method::PUT, base, &update, tok, Some(json!({ "key": k, "nonce": nonce }))).await?;
        if !s.is_success() {
            let _ = http.json(Method::DELETE, base, &attempt, tok, None).await;
            bail!("generate-root: a key share was refused ({s}); the attempt was cancelled");
        }
        let v = data(v);
        if v.get("complete").and_then(|x| x.as_bool()) == Some(true) {
            encoded = v.get("encoded_token").and_then(|x| x.as_str()).map(str::to_string);
            break;
        }
    }
    let encoded = encoded.ok_or_else(|| anyhow!("generate-root: not enough key shares for the threshold"))?;
    decode(&encoded, &otp)
}

/// The token from `encoded_token` and the OTP: base64 (raw or padded) XOR the OTP's bytes.
pub fn decode(encoded: &str, otp: &str) -> Result<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded))
        .context("encoded_token is not base64")?;
    if raw.len() != otp.len() {
        bail!("encoded token ({} bytes) and OTP ({} bytes) differ in length", raw.len(), otp.len());
    }
    let bytes: Vec<u8> = raw.iter().zip(otp.as_bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(bytes).context("decoded token is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_xor_with_the_otp() {
        let token = "s.abcdefghijklmnopqrstuvwxyz";
        let otp = "0123456789012345678901234567";
        let x: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&x);
        assert_eq!(decode(&enc, otp).unwrap(), token);
        assert!(decode(&enc, "short").is_err());
    }
}
