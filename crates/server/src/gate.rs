//! Device authentication for the broker: who is this client, and which topics are its own.
//!
//! The decision itself is otter-protocol's pure `verify`; this file only finds the product and
//! device a CONNECT claims to be and hands the broker the device's exact topic sets (its ACL).

use otter_broker::{Gate, Grant, Login, Refusal};
use otter_core::{DeviceName, ProductId};
use otter_protocol::{self as protocol, Credentials, DeviceAddr, Dialect};
use otter_store::{Store, StoreError};
use tracing::warn;

/// A connected, authenticated device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub dialect: Dialect,
    pub product: ProductId,
    pub device: DeviceName,
}

impl DeviceIdentity {
    pub fn addr(&self) -> DeviceAddr {
        DeviceAddr::new(self.product.as_str(), self.device.as_str())
    }
}

pub struct DeviceGate {
    pub store: Store,
}

impl Gate for DeviceGate {
    type Identity = DeviceIdentity;

    async fn authenticate(&self, login: Login) -> Result<Grant<DeviceIdentity>, Refusal> {
        let peer = login.peer;
        let creds = Credentials {
            client_id: login.client_id,
            username: login.username,
            password: login.password,
        };
        let result = self.check(&creds).await;
        match &result {
            Ok(grant) => {
                tracing::info!(%peer, device = %grant.identity.addr(), "device authenticated")
            }
            Err(refusal) => {
                warn!(%peer, client_id = %creds.client_id, ?refusal, "device login refused")
            }
        }
        result
    }
}

impl DeviceGate {
    async fn check(&self, creds: &Credentials) -> Result<Grant<DeviceIdentity>, Refusal> {
        let (product, device) = self.claimed_device(creds).await?;
        let product = self
            .store
            .product(&product)
            .await
            .map_err(refuse("product"))?;
        let dialect: Dialect = product
            .dialect
            .parse()
            .map_err(|_| Refusal::NotAuthorized)?;
        let record = self
            .store
            .device(&product.id, &device)
            .await
            .map_err(refuse("device"))?;
        let identity = DeviceIdentity {
            dialect,
            product: product.id,
            device,
        };
        let addr = identity.addr();
        protocol::verify(dialect, &addr, &record.secret, creds).map_err(|e| {
            warn!(device = %addr, error = %e, "bad device credentials");
            Refusal::BadCredentials
        })?;
        Ok(Grant {
            publish_topics: protocol::upstream_topics(dialect, &addr),
            receive_topics: protocol::downstream_topics(dialect, &addr),
            identity,
        })
    }

    /// The product and device a login names. Tencent client ids are `{productId}{deviceName}`
    /// with no separator, so the product is the registered Tencent product that prefixes it.
    async fn claimed_device(
        &self,
        creds: &Credentials,
    ) -> Result<(ProductId, DeviceName), Refusal> {
        let login = protocol::parse_login(creds).map_err(|e| {
            warn!(client_id = %creds.client_id, error = %e, "unparsable login");
            Refusal::BadCredentials
        })?;
        let (product, device) = match login {
            protocol::Login::Keyed { product, device } => (product, device),
            protocol::Login::Tencent { client_id } => self.split_tencent(&client_id).await?,
        };
        let product = ProductId::parse(product).map_err(|_| Refusal::NotAuthorized)?;
        let device = DeviceName::parse(device).map_err(|_| Refusal::NotAuthorized)?;
        Ok((product, device))
    }

    async fn split_tencent(&self, client_id: &str) -> Result<(String, String), Refusal> {
        let products = self.store.products().await.map_err(refuse("products"))?;
        products
            .iter()
            .filter(|p| p.dialect == Dialect::Tencent.as_str())
            .filter_map(|p| {
                let device = client_id.strip_prefix(p.id.as_str())?;
                (!device.is_empty()).then(|| (p.id.to_string(), device.to_owned()))
            })
            .max_by_key(|(product, _)| product.len())
            .ok_or(Refusal::NotAuthorized)
    }
}

fn refuse(what: &'static str) -> impl Fn(StoreError) -> Refusal {
    move |e| {
        match e {
            StoreError::NotFound(_) => warn!(error = %e, "login for unknown {what}"),
            _ => tracing::error!(error = %e, "store failed during login"),
        }
        Refusal::NotAuthorized
    }
}
