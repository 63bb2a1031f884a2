//! Otter's side of the TLS-PSK terminator (otter-psk): a Tencent device's PSK identity is its
//! client id `{productId}{deviceName}`, its key the base64-decoded device secret, and the login
//! forwarded to the broker is the HMAC login that device would send in key mode — so the gate
//! verifies PSK devices exactly like the others.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use otter_core::{DeviceName, ProductId};
use otter_protocol::{self as protocol, DeviceAddr, Dialect};
use otter_psk::{PskLogin, PskLookup};
use otter_store::Store;
use tracing::{debug, error};

use otter_engine::secrets::SecretBox;

/// Finds a Tencent device by PSK identity and signs its broker login.
pub(crate) struct TencentPsk {
    pub store: Store,
    pub secrets: Arc<SecretBox>,
}

impl PskLookup for TencentPsk {
    async fn login(&self, identity: &str) -> Option<PskLogin> {
        let (product, device) = self.split(identity).await?;
        let record = self.store.device(&product, &device).await.ok()?;
        let secret = self
            .secrets
            .open(product.as_str(), device.as_str(), &record.secret)
            .inspect_err(|e| error!(%product, %device, error = %e, "cannot open a device secret"))
            .ok()?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .inspect_err(|_| debug!(%product, %device, "device secret is not base64: no PSK"))
            .ok()?;
        let addr = DeviceAddr::new(product.as_str(), device.as_str());
        let creds = protocol::sign(Dialect::Tencent, &addr, &secret, now_ms());
        Some(PskLogin {
            key,
            username: creds.username?,
            password: String::from_utf8(creds.password?).ok()?,
        })
    }
}

impl TencentPsk {
    /// The Tencent product whose id is the longest prefix of `identity`, and the rest as the
    /// device name (the same rule as the gate's for Tencent client ids).
    async fn split(&self, identity: &str) -> Option<(ProductId, DeviceName)> {
        let products = self
            .store
            .products()
            .await
            .inspect_err(|e| error!(error = %e, "store failed during a PSK lookup"))
            .ok()?;
        let (product, device) = otter_engine::gate::split_tencent_id(&products, identity)?;
        Some((
            ProductId::parse(product).ok()?,
            DeviceName::parse(device).ok()?,
        ))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
