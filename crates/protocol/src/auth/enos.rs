//! EnOS `securemode=2` authentication: a plain hash (not an HMAC, whatever the name says) of
//! the sorted parameters immediately followed by the device secret.

use super::{
    AuthError, ClientId, Credentials, Hash, digest_hex, hex_matches, keyed_login, password,
};
use crate::DeviceAddr;

/// `clientId{id}deviceKey{dk}productKey{pk}[timestamp{ts}]{secret}`.
fn content(id: &str, dev: &DeviceAddr, ts: Option<&str>, secret: &str) -> String {
    let ts = ts.map(|t| format!("timestamp{t}")).unwrap_or_default();
    format!(
        "clientId{id}deviceKey{}productKey{}{ts}{secret}",
        dev.device, dev.product
    )
}

pub(super) fn verify(dev: &DeviceAddr, secret: &str, c: &Credentials) -> Result<(), AuthError> {
    keyed_login(dev, c)?;
    let cid = ClientId::parse(&c.client_id)?;
    if let Some(mode) = cid.get("securemode")
        && mode != "2"
    {
        // securemode=3 (product secret, dynamic activation) is not supported yet.
        return Err(AuthError::UnsupportedSecureMode(mode.to_owned()));
    }
    let method = cid
        .get("signmethod")
        .ok_or(AuthError::MissingParam("signmethod"))?;
    let hash = match method.to_ascii_lowercase().as_str() {
        "sha256" | "hmacsha256" => Hash::Sha256,
        "sha1" | "hmacsha1" => Hash::Sha1,
        "md5" | "hmacmd5" => Hash::Md5,
        _ => return Err(AuthError::UnsupportedSignMethod(method.to_owned())),
    };
    // The timestamp is used verbatim: the SDK sends a fractional one fixed at start-up.
    let msg = content(cid.id, dev, cid.get("timestamp"), secret);
    if hex_matches(password(c)?, &digest_hex(hash, msg.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

pub(super) fn sign(dev: &DeviceAddr, secret: &str, timestamp_ms: u64) -> Credentials {
    let ts = timestamp_ms.to_string();
    let id = dev.device.clone();
    let digest = digest_hex(
        Hash::Sha256,
        content(&id, dev, Some(&ts), secret).as_bytes(),
    );
    Credentials {
        client_id: format!("{id}|securemode=2,signmethod=hmacsha256,timestamp={ts}|"),
        username: Some(format!("{}&{}", dev.device, dev.product)),
        password: Some(digest.into_bytes()),
    }
}
