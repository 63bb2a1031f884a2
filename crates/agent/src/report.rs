//! Turns what the agent has to say (version, progress, job requests, results) into the
//! dialect's MQTT publishes. One place knows which dialect expresses what and at which QoS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use otter_protocol::{
    DeviceAddr, Dialect, Outbound, Progress, UpMessage, Uplink, downstream_topics,
    try_encode_uplink,
};
use rumqttc::{AsyncClient, QoS};

use crate::outbox::Report;
use serde_json::Value;

/// Publishes the agent's reports through the MQTT client. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Reporter {
    client: AsyncClient,
    dialect: Dialect,
    device: DeviceAddr,
    module: String,
    next_id: Arc<AtomicU64>,
}

impl Reporter {
    pub(crate) fn new(
        client: AsyncClient,
        dialect: Dialect,
        device: DeviceAddr,
        module: String,
    ) -> Self {
        Reporter {
            client,
            dialect,
            device,
            module,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Subscribes the dialect's downstream topics at QoS 1 (Tencent's server expects QoS 1;
    /// the others deliver anyway, subscribing does no harm). Never blocks the event loop.
    pub(crate) fn subscribe(&self) {
        for topic in downstream_topics(self.dialect, &self.device) {
            if let Err(err) = self.client.try_subscribe(&topic, QoS::AtLeastOnce) {
                tracing::warn!(%topic, error = %err, "cannot queue subscribe");
            }
        }
    }

    /// The version report (Tencent `report_version`, Aliyun/EnOS `inform`), without waiting.
    /// True when it was queued (at QoS 1).
    pub(crate) fn try_version(&self, version: &str) -> bool {
        self.encode(self.version_message(version))
            .is_some_and(|out| self.try_send(out, QoS::AtLeastOnce))
    }

    /// The publish for a result report, `None` for states the dialect cannot express
    /// (`burning` and `done` outside Tencent).
    pub(crate) fn result(&self, report: &Report) -> Option<Outbound> {
        let progress = |version: &str, progress| self.progress_message(version, progress);
        let message = match report.clone() {
            Report::Version { version } => self.version_message(&version),
            Report::Burning { version } if self.dialect == Dialect::Tencent => {
                progress(&version, Progress::Burning)
            }
            Report::Done { version } if self.dialect == Dialect::Tencent => {
                progress(&version, Progress::Done)
            }
            Report::Burning { .. } | Report::Done { .. } => return None,
            Report::Failed {
                version,
                code,
                message,
            } => progress(&version, Progress::Failed { code, message }),
        };
        self.encode(message)
    }

    /// A health report (counter increments) at QoS 1, without waiting; true when queued.
    pub(crate) fn try_health(&self, counters: std::collections::BTreeMap<String, u64>) -> bool {
        self.encode(UpMessage::Health { counters })
            .is_some_and(|out| self.try_send(out, QoS::AtLeastOnce))
    }

    /// Queues a QoS 1 publish without waiting; true when queued.
    pub(crate) fn try_send_qos1(&self, out: Outbound) -> bool {
        self.try_send(out, QoS::AtLeastOnce)
    }

    /// The version report, waiting for room in the client's queue.
    pub(crate) async fn version(&self, version: &str) {
        if let Some(out) = self.encode(self.version_message(version)) {
            self.send(out, QoS::AtLeastOnce).await;
        }
    }

    /// Asks for this device's job (Aliyun `firmware/get`, EnOS `getversion`); nothing for
    /// Tencent, whose server pushes after every version report. True when queued (QoS 1).
    pub(crate) fn try_firmware_request(&self) -> bool {
        if self.dialect == Dialect::Tencent {
            return false;
        }
        let message = UpMessage::FirmwareRequest {
            module: self.module.clone(),
        };
        self.encode(message)
            .is_some_and(|out| self.try_send(out, QoS::AtLeastOnce))
    }

    /// Download progress at QoS 0; dropped rather than waited for when the queue is full.
    pub(crate) fn try_downloading(&self, version: &str, percent: u8) {
        let progress = Progress::Downloading { percent };
        if let Some(out) = self.encode(self.progress_message(version, progress)) {
            let _ = self.try_send(out, QoS::AtMostOnce);
        }
    }

    /// A progress state at QoS 1. States the dialect cannot express (`burning` and `done`
    /// outside Tencent) are skipped.
    pub(crate) async fn progress(&self, version: &str, progress: Progress) {
        if self.dialect != Dialect::Tencent
            && matches!(progress, Progress::Burning | Progress::Done)
        {
            return;
        }
        if let Some(out) = self.encode(self.progress_message(version, progress)) {
            self.send(out, QoS::AtLeastOnce).await;
        }
    }

    /// A failure with the dialect's code.
    pub(crate) async fn failed(&self, version: &str, code: i32, message: String) {
        self.progress(version, Progress::Failed { code, message })
            .await;
    }

    fn version_message(&self, version: &str) -> UpMessage {
        UpMessage::VersionReport {
            module: self.module.clone(),
            version: version.to_owned(),
        }
    }

    fn progress_message(&self, version: &str, progress: Progress) -> UpMessage {
        UpMessage::Progress {
            module: self.module.clone(),
            version: Some(version.to_owned()),
            progress,
        }
    }

    /// Encodes a message; request ids are JSON strings (EnOS requires it, Aliyun accepts it).
    fn encode(&self, message: UpMessage) -> Option<Outbound> {
        let request_id = match self.dialect {
            Dialect::Tencent => None,
            Dialect::Aliyun | Dialect::Enos => Some(Value::from(
                self.next_id.fetch_add(1, Ordering::Relaxed).to_string(),
            )),
        };
        let uplink = Uplink {
            dialect: self.dialect,
            device: self.device.clone(),
            request_id,
            message,
            via: None,
        };
        match try_encode_uplink(&uplink) {
            Ok(out) => Some(out),
            Err(err) => {
                tracing::warn!(error = %err, message = ?uplink.message, "cannot encode report");
                None
            }
        }
    }

    fn try_send(&self, out: Outbound, qos: QoS) -> bool {
        tracing::debug!(topic = %out.topic, payload = %String::from_utf8_lossy(&out.payload), "report");
        match self.client.try_publish(out.topic, qos, false, out.payload) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "cannot queue report");
                false
            }
        }
    }

    async fn send(&self, out: Outbound, qos: QoS) {
        tracing::debug!(topic = %out.topic, payload = %String::from_utf8_lossy(&out.payload), "report");
        if let Err(err) = self
            .client
            .publish(out.topic, qos, false, out.payload)
            .await
        {
            tracing::warn!(error = %err, "cannot queue report");
        }
    }
}
