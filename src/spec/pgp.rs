//! Reading an OpenPGP public key the way bao reads `pgp_keys`: armored, binary, or base64 of the binary.
//! Lives in spec/ so that validation and `bootstrap` share one reader.

use anyhow::{bail, Result};
use base64::Engine as _;

/// What OpenBao's init wants for a PGP key: the base64 of the binary public key. Accepts the three
/// forms people have: ASCII-armored (`gpg --export --armor`), binary (`gpg --export`), or base64 text.
pub fn pgp_key_base64(raw: &[u8]) -> Result<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Ok(text) = std::str::from_utf8(raw) {
        if text.contains("PRIVATE KEY BLOCK") {
            bail!("this is a PGP *private* key; export the public key only (gpg --export KEYID)");
        }
        if let Some(start) = text.find("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
            // Armor: header lines up to the first empty line, base64 body, "=CRC" line, footer.
            let body: String = text[start..]
                .lines()
                .skip(1)
                .skip_while(|l| !l.trim().is_empty())
                .take_while(|l| !l.starts_with("-----END"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('='))
                .collect();
            b64.decode(&body).map_err(|e| anyhow::anyhow!("the armored key's body is not base64: {e}"))?;
            return Ok(body);
        }
        let joined: String = text.split_whitespace().collect();
        if !joined.is_empty() && b64.decode(&joined).is_ok() {
            return Ok(joined);
        }
    }
    Ok(b64.encode(raw))
}
