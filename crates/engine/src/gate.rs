//! Device authentication for the broker: who is this client, and which topics are its own.
//!
//! The decision itself is otter-protocol's pure `verify`; this file only finds the product and
//! device a CONNECT claims to be and hands the broker the device's exact topic sets (its ACL).

use otter_core::{DeviceName, ProductId};
use otter_mqtt::{Gate, Grant, Login, Refusal};
use otter_protocol::{self as protocol, Credentials, DeviceAddr, Dialect};
use otter_store::{Store, StoreError};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::warn;

use crate::secrets::SecretBox;
use crate::throttle::{Slowdown, Throttle, ThrottleConfig};

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
    store: Store,
    secrets: Arc<SecretBox>,
    /// Ceiling of failures per client address: beyond it the address is refused outright.
    by_address: Throttle<IpAddr>,
    /// Wrong secrets for one device from one address.
    by_device: Throttle<(IpAddr, ProductId, DeviceName)>,
    /// Logins for identities that do not exist (or cannot be parsed), from any address.
    by_unknown: Throttle<String>,
    slow_device: Slowdown<(IpAddr, ProductId, DeviceName)>,
    slow_unknown: Slowdown<String>,
}

/// Longest unknown identity kept as a throttle key (client ids can be long).
const MAX_UNKNOWN_KEY: usize = 160;

/// Which throttle key a failed login counts against.
enum Claim {
    /// A registered device (wrong secret).
    Device(ProductId, DeviceName),
    /// An identity that is not a registered device.
    Unknown(String),
}

impl Gate for DeviceGate {
    type Identity = DeviceIdentity;

    async fn authenticate(&self, login: Login) -> Result<Grant<DeviceIdentity>, Refusal> {
        let peer = login.peer;
        if let Some(cn) = login.cert_identity.as_deref() {
            return self.cert_login(cn, peer).await;
        }
        let now = Instant::now();
        if self.by_address.blocked(&peer.ip(), now) {
            tracing::debug!(%peer, "login refused: address over its ceiling of failed logins");
            return Err(Refusal::NotAuthorized);
        }
        let creds = Credentials {
            client_id: login.client_id,
            username: login.username,
            password: login.password,
        };
        let mut claimed = None;
        let result = self.check(&creds, peer.ip(), &mut claimed).await;
        match &result {
            Ok(grant) => {
                tracing::info!(%peer, device = %grant.identity.addr(), "device authenticated")
            }
            Err(refusal) => {
                warn!(%peer, client_id = %creds.client_id, ?refusal, "device login refused");
                let claim =
                    claimed.unwrap_or_else(|| Claim::Unknown(unknown_key(&creds.client_id)));
                self.count_failure(peer.ip(), claim, Instant::now());
            }
        }
        result
    }
}

/// The throttle key of an identity that is not a registered device.
fn unknown_key(name: &str) -> String {
    name.chars().take(MAX_UNKNOWN_KEY).collect()
}

impl DeviceGate {
    pub fn new(store: Store, secrets: Arc<SecretBox>, limits: ThrottleConfig) -> Self {
        Self {
            store,
            secrets,
            by_address: Throttle::new(limits.per_address, limits.window),
            by_device: Throttle::new(limits.per_device, limits.window),
            by_unknown: Throttle::new(limits.per_device, limits.window),
            slow_device: Slowdown::new(limits.penalty),
            slow_unknown: Slowdown::new(limits.penalty),
        }
    }

    fn count_failure(&self, ip: IpAddr, claim: Claim, now: Instant) {
        if self.by_address.fail(&ip, now) {
            warn!(%ip, "failed logins from this address reached the ceiling: refusing it for a while");
        }
        match claim {
            Claim::Device(product, device) => {
                let name = format!("{product}/{device}");
                if self.by_device.fail(&(ip, product, device), now) {
                    warn!(%ip, device = %name, "too many wrong secrets for this device from this address: slowing its logins from there");
                }
            }
            Claim::Unknown(name) => {
                if self.by_unknown.fail(&name, now) {
                    warn!(identity = %name, "too many logins for this unknown identity: slowing them");
                }
            }
        }
    }

    /// Authenticates `creds`; `claimed` learns which throttle key a failure counts against.
    /// A key over its limit is slowed (never refused): a right secret still connects.
    async fn check(
        &self,
        creds: &Credentials,
        ip: IpAddr,
        claimed: &mut Option<Claim>,
    ) -> Result<Grant<DeviceIdentity>, Refusal> {
        let (product, device) = self.claimed_device(creds).await?;
        let unknown = unknown_key(&format!("{product}/{device}"));
        *claimed = Some(Claim::Unknown(unknown.clone()));
        let now = Instant::now();
        if self.by_unknown.blocked(&unknown, now) {
            tracing::debug!(%product, %device, "login slowed: many logins for this identity failed");
            self.slow_unknown.wait(&unknown).await;
        }
        let (identity, stored_secret) = self.registered(product.clone(), device.clone()).await?;
        let key = (ip, product.clone(), device.clone());
        *claimed = Some(Claim::Device(product, device));
        if self.by_device.blocked(&key, Instant::now()) {
            tracing::debug!(device = %identity.addr(), %ip, "login slowed: many wrong secrets for this device from this address");
            self.slow_device.wait(&key).await;
        }
        let addr = identity.addr();
        let secret = self.device_secret(&identity, &stored_secret)?;
        protocol::verify(identity.dialect, &addr, &secret, creds).map_err(|e| {
            warn!(device = %addr, error = %e, "bad device credentials");
            Refusal::BadCredentials
        })?;
        Ok(grant(identity))
    }

    /// The identity of a registered device (with its product's dialect) and its stored secret.
    async fn registered(
        &self,
        product: ProductId,
        device: DeviceName,
    ) -> Result<(DeviceIdentity, String), Refusal> {
        let product = self
            .store
            .product(&product)
            .await
            .map_err(refuse("product"))?;
        let dialect = product.dialect;
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
        Ok((identity, record.secret))
    }

    /// The plain secret of a device, from its sealed stored form.
    fn device_secret(&self, id: &DeviceIdentity, stored: &str) -> Result<String, Refusal> {
        self.secrets
            .open(id.product.as_str(), id.device.as_str(), stored)
            .map_err(|e| {
                tracing::error!(device = %id.addr(), error = %e, "cannot open the device's stored secret");
                Refusal::NotAuthorized
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
        split_tencent_id(&products, client_id).ok_or(Refusal::NotAuthorized)
    }
}

/// The (product, device) a Tencent client id `{productId}{deviceName}` names: the registered
/// Tencent product that is its longest prefix, and the rest. Also the rule for PSK identities.
pub fn split_tencent_id(
    products: &[otter_store::Product],
    client_id: &str,
) -> Option<(String, String)> {
    products
        .iter()
        .filter(|p| p.dialect == Dialect::Tencent)
        .filter_map(|p| {
            let device = client_id.strip_prefix(p.id.as_str())?;
            (!device.is_empty()).then(|| (p.id.to_string(), device.to_owned()))
        })
        .max_by_key(|(product, _)| product.len())
}

impl DeviceGate {
    /// A device identified by the client certificate the broker's TLS listener verified against
    /// the configured client CA (docs/tls.md): the CN is `{productId}/{deviceName}`, and no
    /// secret is checked — the certificate is the credential.
    async fn cert_login(
        &self,
        cn: &str,
        peer: std::net::SocketAddr,
    ) -> Result<Grant<DeviceIdentity>, Refusal> {
        let Some((product, device)) = cn.split_once('/') else {
            warn!(%peer, cn, "client certificate CN is not productId/deviceName");
            return Err(Refusal::NotAuthorized);
        };
        let product = ProductId::parse(product).map_err(|_| Refusal::NotAuthorized)?;
        let device = DeviceName::parse(device).map_err(|_| Refusal::NotAuthorized)?;
        let (identity, _) = self.registered(product, device).await?;
        tracing::info!(%peer, device = %identity.addr(), "device authenticated by client certificate");
        Ok(grant(identity))
    }
}

/// What a device may do: publish on its own upstream topics, receive its own downstream ones.
fn grant(identity: DeviceIdentity) -> Grant<DeviceIdentity> {
    let addr = identity.addr();
    Grant {
        publish_topics: protocol::upstream_topics(identity.dialect, &addr),
        receive_topics: protocol::downstream_topics(identity.dialect, &addr),
        identity,
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

/// For an external broker's auth hooks (api/broker_hooks.rs): CONNECTs go through
/// `Gate::authenticate` exactly as on the embedded broker; later publish/subscribe checks find
/// the device the (already verified) connection belongs to.
impl DeviceGate {
    /// The grant of the device a connection's client id and username name, without checking
    /// a password: for ACL checks on a connection the broker already authenticated.
    pub async fn identify(
        &self,
        client_id: &str,
        username: Option<&str>,
    ) -> Result<Grant<DeviceIdentity>, Refusal> {
        let creds = Credentials {
            client_id: client_id.to_owned(),
            username: username.map(str::to_owned),
            password: None,
        };
        let (product, device) = self.claimed_device(&creds).await?;
        let (identity, _) = self.registered(product, device).await?;
        Ok(grant(identity))
    }
}
