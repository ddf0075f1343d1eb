//! Certificate credentials: read a PEM or PKCS#12 file, sign an RS256 client assertion with an
//! `x5t` (SHA-1 thumbprint) header, as Microsoft Entra accepts.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use base64::Engine as _;
use sha1::Digest as _;

/// Why a certificate cannot be used (the credential chain turns it into its own error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot use the client certificate `{path}`: {reason}")]
pub(crate) struct CertError {
    /// The file, or `(in memory)` when signing failed.
    pub path: String,
    pub reason: String,
}

/// `x5t`: the base64url SHA-1 thumbprint of a certificate's DER bytes.
pub(crate) fn x5t(cert_der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(cert_der))
}

/// Loads the private key and the certificate's thumbprint from `path`: PEM (certificate and
/// private key blocks in one file) or PKCS#12 (`.pfx`/`.p12`, with the password if any).
pub(crate) fn load(path: &Path, password: Option<&SecretString>) -> Result<(EncodingKey, String), CertError> {
    let err = |reason: String| CertError { path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(crate::diag::io_reason(&e)))?;
    if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return load_pem(&bytes).map_err(err);
    }
    load_pkcs12(&bytes, password).map_err(err)
}

fn load_pem(bytes: &[u8]) -> Result<(EncodingKey, String), String> {
    let blocks = pem::parse_many(bytes).map_err(|e| format!("not a PEM file ({e})"))?;
    let key_block = blocks
        .iter()
        .find(|b| b.tag() == "PRIVATE KEY" || b.tag() == "RSA PRIVATE KEY")
        .ok_or("no unencrypted PRIVATE KEY block (encrypted PEM keys are not supported; use PKCS#12)")?;
    let key = EncodingKey::from_rsa_pem(pem::encode(key_block).as_bytes())
        .map_err(|_| "the private key is not an RSA key".to_owned())?;
    // A file may hold a chain: the thumbprint must be that of the key's own certificate, not of
    // whichever comes first (Entra would refuse the assertion, or match another credential).
    let modulus = rsa_modulus(key_block.contents()).ok_or("cannot read the RSA private key")?;
    let mut certs = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").peekable();
    if certs.peek().is_none() {
        return Err("no CERTIFICATE block".into());
    }
    let cert = certs
        .find(|c| c.contents().windows(modulus.len()).any(|w| w == modulus))
        .ok_or("no certificate in the file belongs to its private key")?;
    Ok((key, x5t(cert.contents())))
}

/// One DER element: its tag, its content, and what follows it.
fn der(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The modulus of an RSA private key, PKCS#1 (`RSAPrivateKey`) or PKCS#8 (`PrivateKeyInfo`
/// wrapping one): the bytes that also appear in its certificate's public key.
fn rsa_modulus(key_der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (tag, seq, _) = der(key_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, _version, rest) = der(seq)?;
    if tag != INTEGER {
        return None;
    }
    match der(rest)? {
        // PKCS#1: the modulus follows the version.
        (INTEGER, modulus, _) if modulus.len() >= 64 => Some(modulus),
        // PKCS#8: an AlgorithmIdentifier, then the PKCS#1 key in an OCTET STRING.
        (SEQUENCE, _, rest) => match der(rest)? {
            (OCTET_STRING, inner, _) => rsa_modulus(inner),
            _ => None,
        },
        _ => None,
    }
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
pub(crate) fn assertion(key: &EncodingKey, x5t: &str, client_id: &str, token_url: &str) -> Result<String, CertError> {
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
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|e| CertError { path: "(in memory)".into(), reason: format!("cannot sign the assertion: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    // Regression: the thumbprint was the first certificate's, whatever the
    // key; it must be the key's own certificate, wherever it is in the file.
    #[test]
    fn the_thumbprint_is_the_keys_own_certificate() {
        let (_, own) = load(&fixture("client-cert.pem"), None).expect("pem");
        let (_, in_chain) = load(&fixture("client-cert-chain.pem"), None).expect("chain");
        assert_eq!(in_chain, own);
        let err = load(&fixture("client-cert-mismatch.pem"), None).expect_err("mismatch");
        assert!(err.to_string().contains("no certificate in the file belongs to its private key"), "{err}");
    }
}
