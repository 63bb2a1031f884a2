//! Alibaba Cloud `securemode=2|3` authentication: HMAC over the sorted, concatenated
//! parameters, keyed with the device secret; optional timestamp and signed region id.

use std::collections::BTreeMap;

use super::{AuthError, ClientId, Credentials, Hash, hex_matches, hmac_hex, keyed_login, password};
use crate::DeviceAddr;

/// Alibaba Cloud's public region ids, accepted in the signed content by default (the seed's
/// simulator signs `regionId{region}`).
pub const DEFAULT_REGIONS: &[&str] = &[
    "cn-qingdao",
    "cn-beijing",
    "cn-zhangjiakou",
    "cn-huhehaote",
    "cn-wulanchabu",
    "cn-hangzhou",
    "cn-shanghai",
    "cn-nanjing",
    "cn-fuzhou",
    "cn-wuhan-lr",
    "cn-shenzhen",
    "cn-heyuan",
    "cn-guangzhou",
    "cn-chengdu",
    "cn-hongkong",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-south-1",
    "us-east-1",
    "us-west-1",
    "eu-west-1",
    "eu-central-1",
    "me-east-1",
    "me-central-1",
];

/// `clientId{id}deviceName{dn}productKey{pk}[regionId{r}][timestamp{ts}]`, keys sorted.
fn content(id: &str, dev: &DeviceAddr, ts: Option<&str>, region: Option<&str>) -> String {
    let mut fields = BTreeMap::from([
        ("clientId", id),
        ("deviceName", dev.device.as_str()),
        ("productKey", dev.product.as_str()),
    ]);
    if let Some(ts) = ts {
        fields.insert("timestamp", ts);
    }
    if let Some(r) = region {
        fields.insert("regionId", r);
    }
    fields.into_iter().map(|(k, v)| format!("{k}{v}")).collect()
}

pub(super) fn verify(
    dev: &DeviceAddr,
    secret: &str,
    c: &Credentials,
    regions: &[&str],
) -> Result<(), AuthError> {
    keyed_login(dev, c)?;
    let cid = ClientId::parse(&c.client_id)?;
    let method = cid
        .get("signmethod")
        .ok_or(AuthError::MissingParam("signmethod"))?;
    let announced = match method.to_ascii_lowercase().as_str() {
        "hmacsha1" => Hash::Sha1,
        "hmacsha256" => Hash::Sha256,
        "hmacmd5" => Hash::Md5,
        _ => return Err(AuthError::UnsupportedSignMethod(method.to_owned())),
    };
    let pw = password(c)?;
    // Alibaba's Node SDK announces sha256/md5 but signs with SHA-1.
    let hashes: &[Hash] = if announced == Hash::Sha1 {
        &[Hash::Sha1]
    } else {
        &[announced, Hash::Sha1]
    };
    let ts = cid.get("timestamp");
    let own_region = cid.get("regionId");
    let candidates = std::iter::once(None)
        .chain(own_region.map(Some))
        .chain(regions.iter().map(|r| Some(*r)));
    let mut ok = false;
    for region in candidates {
        let msg = content(cid.id, dev, ts, region);
        for h in hashes {
            // No early exit: the work done does not depend on which candidate matched.
            ok |= hex_matches(pw, &hmac_hex(*h, secret.as_bytes(), msg.as_bytes()));
        }
    }
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

pub(super) fn sign(dev: &DeviceAddr, secret: &str, timestamp_ms: u64) -> Credentials {
    let id = format!("{}&{}", dev.product, dev.device);
    let ts = timestamp_ms.to_string();
    let mac = hmac_hex(
        Hash::Sha256,
        secret.as_bytes(),
        content(&id, dev, Some(&ts), None).as_bytes(),
    );
    Credentials {
        client_id: format!("{id}|securemode=3,signmethod=hmacsha256,timestamp={ts}|"),
        username: Some(format!("{}&{}", dev.device, dev.product)),
        password: Some(mac.into_bytes()),
    }
}
