//! Certificate credentials: read a PEM or PKCS#12 file, sign an RS256 client assertion with an
//! `x5t` (SHA-1 thumbprint) header, as Microsoft Entra accepts.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::auth::{AuthError, x5t};

/// Loads the private key and the certificate's thumbprint from `path`: PEM (certificate and
/// private key blocks in one file) or PKCS#12 (`.pfx`/`.p12`, with the password if any).
pub fn load(path: &Path, password: Option<&SecretString>) -> Result<(EncodingKey, String), AuthError> {
    let err = |reason: String| AuthError::Certificate { path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(crate::manifest::source::io_reason(&e)))?;
    if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return load_pem(&bytes).map_err(err);
    }
    load_pkcs12(&bytes, password).map_err(err)
}

fn load_pem(bytes: &[u8]) -> Result<(EncodingKey, String), String> {
    let blocks = pem::parse_many(bytes).map_err(|e| format!("not a PEM file ({e})"))?;
    let cert = blocks.iter().find(|b| b.tag() == "CERTIFICATE").ok_or("no CERTIFICATE block")?;
    let key = blocks
        .iter()
        .find(|b| b.tag() == "PRIVATE KEY" || b.tag() == "RSA PRIVATE KEY")
        .ok_or("no unencrypted PRIVATE KEY block (encrypted PEM keys are not supported; use PKCS#12)")?;
    let key = EncodingKey::from_rsa_pem(pem::encode(key).as_bytes())
        .map_err(|_| "the private key is not an RSA key".to_owned())?;
    Ok((key, x5t(cert.contents())))
}

#[cfg(feature = "pkcs12")]
fn load_pkcs12(bytes: &[u8], password: Option<&SecretString>) -> Result<(EncodingKey, String), String> {
    let pass = password.map(|p| p.expose_secret().to_owned()).unwrap_or_default();
    let store = p12_keystore::KeyStore::from_pkcs12(bytes, &pass)
        .map_err(|_| "not a PKCS#12 file, or the password (AZURE_CLIENT_CERTIFICATE_PASSWORD) is wrong".to_owned())?;
    let (_, chain) = store.private_key_chain().ok_or("the PKCS#12 file holds no private key")?;
    let cert = chain.chain().first().ok_or("the PKCS#12 file holds no certificate for its key")?;
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", chain.key().to_vec()));
    let key =
        EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|_| "the private key is not an RSA key".to_owned())?;
    Ok((key, x5t(cert.as_der())))
}

#[cfg(not(feature = "pkcs12"))]
fn load_pkcs12(_: &[u8], _: Option<&SecretString>) -> Result<(EncodingKey, String), String> {
    Err("not a PEM file; PKCS#12 support was left out of this build (feature `pkcs12`)".to_owned())
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// A fresh client assertion for `token_url`, valid for ten minutes.
pub fn assertion(key: &EncodingKey, x5t: &str, client_id: &str, token_url: &str) -> Result<String, AuthError> {
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.x5t = Some(x5t.to_owned());
    let claims = Claims {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now,
        iat: now,
        exp: now + 600,
    };
    jsonwebtoken::encode(&header, &claims, key).map_err(|e| AuthError::Certificate {
        path: "(in memory)".into(),
        reason: format!("cannot sign the assertion: {e}"),
    })
}
