//! Releasing a wave: one verdict of `decide` per device, one statement per verdict, then the
//! pushes.

use super::*;

impl Campaigns {
    /// Releases queued devices: each gets `decide`'s verdict for `Fact::Released` (pushed when
    /// online, pending while offline or until it asks, skipped, or already done), stored with
    /// one statement per verdict; then the offer goes to those recorded as pushed. A push that
    /// fails to publish is retried at the device's next report.
    pub(super) async fn release(
        &self,
        campaign: &Campaign,
        dialect: Dialect,
        upgrades: &[&Upgrade],
        now: i64,
    ) -> Result<()> {
        // Connects and reports are written behind (presence.rs): include every one so far.
        self.devices.presence.flush().await;
        let product = self.store.product(&campaign.product).await?;
        let Some(module) = upgrades.first().map(|u| &u.module) else {
            return Ok(());
        };
        let names: Vec<DeviceName> = upgrades.iter().map(|u| u.device.clone()).collect();
        let fleet: HashMap<DeviceName, otter_store::FleetDevice> = self
            .store
            .fleet_members(&campaign.product, module, &names)
            .await?
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        let mut verdicts: BTreeMap<ReleaseVerdict, Vec<DeviceName>> = BTreeMap::new();
        for upgrade in upgrades {
            let device = fleet.get(&upgrade.device);
            let ctx = Situation {
                mode: campaign.mode,
                allow_downgrade: campaign.allow_downgrade,
                scheme: product.version_scheme,
                running: device.and_then(|d| d.version.as_ref()),
                online: device.is_some_and(|d| d.online),
            };
            // Retried devices were failed in the snapshot; they are queued again by now.
            let queued = UpgradeStatus::queued(upgrade.status.target.clone());
            let decision = decide(&queued, Fact::Released, &ctx);
            let Some(next) = decision.next else { continue };
            verdicts
                .entry(ReleaseVerdict::of(next, decision.push))
                .or_default()
                .push(upgrade.device.clone());
        }
        let mut pushed = Vec::new();
        for (verdict, devices) in &verdicts {
            let change = Transition {
                from: &[UpgradeState::Queued],
                to: verdict.state,
                result_code: None,
                result_msg: verdict.text.as_deref(),
                reason: verdict.reason,
                released_at: Some(now.into()),
                count_push: verdict.push,
                keep_result: false,
            };
            let moved = self
                .store
                .transition(campaign.id, &campaign.product, devices, &change)
                .await?;
            info!(campaign = campaign.id, devices = moved.len(), state = %verdict.state,
                reason = verdict.reason.map(Reason::as_str), "devices released");
            if verdict.push {
                pushed.extend(moved);
            }
        }
        if pushed.is_empty() {
            return Ok(());
        }
        let firmware = self.store.firmware(campaign.firmware_id).await?;
        let ext = self.devices.offer_ext(&firmware).await?;
        for device in &pushed {
            let addr = otter_protocol::DeviceAddr::new(campaign.product.as_str(), device.as_str());
            let offer = self.devices.offer(&firmware, device).await;
            if let Err(e) = self.devices.send_push(dialect, &addr, &offer, &ext).await {
                warn!(campaign = campaign.id, device = %device, error = format!("{e:#}"), "push failed; the device gets it at its next report")
            }
        }
        Ok(())
    }
}

/// One verdict of a release, shared by every device it groups (one statement each).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ReleaseVerdict {
    state: UpgradeState,
    reason: Option<Reason>,
    text: Option<String>,
    push: bool,
}

impl ReleaseVerdict {
    fn of(next: UpgradeStatus, push: bool) -> Self {
        Self {
            state: next.state,
            reason: next.reason,
            text: next.result_msg,
            push,
        }
    }
}
