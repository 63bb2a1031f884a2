//! Offers: what a device is told to download. The vendor fields (URL freshly signed per
//! device, size, MD5) and Otter's `otter` extension (SHA-256, signature, key rotation).

use crate::devices::Devices;
use anyhow::Result;
use otter_core::DeviceName;
use otter_protocol::{self as protocol, Offer};
use otter_store::Firmware;
use tracing::warn;

/// Topic + payload a Tencent SDK device can take in one PUBLISH (PROTOCOL.md §1).
const TENCENT_MAX_PUBLISH: usize = 1900;

impl Devices {
    pub(crate) async fn send_push(
        &self,
        dialect: protocol::Dialect,
        addr: &protocol::DeviceAddr,
        offer: &Offer,
        ext: &protocol::OfferExt,
    ) -> Result<()> {
        let id = self.next_message_id();
        let push = protocol::encode_push_ext(dialect, addr, offer, ext, id);
        if dialect == protocol::Dialect::Tencent
            && push.topic.len() + push.payload.len() > TENCENT_MAX_PUBLISH
        {
            // Tencent's C SDK has a 2048-byte receive buffer: a longer push is silently lost.
            warn!(device = %addr, bytes = push.topic.len() + push.payload.len(), "push exceeds what Tencent SDK devices can receive; shorten --public-url or names");
        }
        self.send(push).await
    }

    /// The `otter` extension of an offer: the SHA-256 (vendor pushes have only MD5) and, when
    /// the firmware is signed, its signature, validity, downgrade permission and the key
    /// announcements leading to its key. Vendor SDKs ignore it, otter agents verify it
    /// (docs/protocol-extensions.md). The same for every device: a release computes it once.
    pub(crate) async fn offer_ext(&self, firmware: &Firmware) -> Result<protocol::OfferExt> {
        let mut ext = protocol::OfferExt {
            sha256: Some(firmware.sha256.clone()),
            ..Default::default()
        };
        let Some(sig) = self.store.firmware_signature(firmware.id).await? else {
            return Ok(ext);
        };
        let keys = self.store.product_keys(&firmware.product).await?;
        ext.rotation = crate::signing::rotation_chain(&keys, &sig.key_id);
        ext.sig = Some(sig.sig);
        ext.key = Some(sig.key_id);
        ext.issued = u64::try_from(sig.issued).ok();
        ext.expires = u64::try_from(sig.expires).ok();
        ext.downgrade = sig.downgrade;
        Ok(ext)
    }

    /// The offer of `firmware` to one device, with a freshly signed download URL.
    pub(crate) async fn offer(&self, firmware: &Firmware, device: &DeviceName) -> Offer {
        // Links are checked against the wall clock by the download server, so they expire on it.
        let expires = (otter_store::now_ms() / 1000) as u64 + self.url_ttl.as_secs();
        let url = self
            .links
            .url(
                &firmware.sha256,
                firmware.product.as_str(),
                device.as_str(),
                expires,
            )
            .await;
        metrics::counter!("otter_pushes_total").increment(1);
        Offer {
            module: firmware.module.to_string(),
            version: firmware.version.to_string(),
            url,
            size: firmware.size,
            md5: firmware.md5.clone(),
            sha256: firmware.sha256.clone(),
        }
    }
}
