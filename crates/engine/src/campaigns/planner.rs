//! The runner: once per tick, every live campaign's snapshot goes to otter-core's pure planner
//! and what it says is applied (release, bake, judge, finish, stop).

use super::*;

impl Campaigns {
    /// Runs the planner over every live campaign once.
    pub(crate) async fn tick(&self) {
        let ids = match self.store.live_campaigns().await {
            Ok(ids) => ids,
            Err(e) => return error!(error = %e, "listing live campaigns failed"),
        };
        for id in ids {
            if let Err(e) = self.step(id).await {
                error!(
                    campaign = id,
                    error = format!("{e:#}"),
                    "campaign step failed"
                );
            }
        }
    }

    pub(crate) fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                self.tick().await;
            }
        })
    }

    /// One planner pass over one campaign.
    pub(crate) async fn step(&self, id: i64) -> Result<()> {
        let mut campaign = self.store.campaign(id).await?;
        let (upgrades, slots, bakes) = self.snapshot(&campaign).await?;
        let now = self.clock.now_ms();
        let actions = campaign::plan(&PlanInput {
            now_ms: now,
            state: campaign.state,
            strategy: &campaign.strategy,
            slots: &slots,
            bakes: &bakes,
        });
        let devices = |idx: &[usize]| {
            idx.iter()
                .filter_map(|i| upgrades.get(*i).map(|u| u.device.clone()))
                .collect::<Vec<_>>()
        };
        let dialect = self.store.product(&campaign.product).await?.dialect;
        for action in actions {
            match action {
                Action::Start => {
                    self.store
                        .set_campaign_state(id, CampaignState::Running, None)
                        .await?;
                    campaign.state = CampaignState::Running;
                    info!(campaign = id, "campaign started");
                }
                Action::Release(idx) => {
                    let released: Vec<&Upgrade> =
                        idx.iter().filter_map(|i| upgrades.get(*i)).collect();
                    self.release(&campaign, dialect, &released, now).await?
                }
                Action::TimeOut(idx) => {
                    // Tencent devices are told nothing; the record says -1 time_out as theirs would.
                    let code = (dialect == Dialect::Tencent).then_some(-1);
                    let change = Transition {
                        from: RELEASED,
                        to: UpgradeState::TimedOut,
                        result_code: code,
                        result_msg: Some("time_out"),
                        reason: Some(Reason::TimedOut),
                        released_at: None,
                        count_push: false,
                        keep_result: false,
                    };
                    let moved = self
                        .store
                        .transition(id, &campaign.product, &devices(&idx), &change)
                        .await?;
                    warn!(campaign = id, devices = moved.len(), "devices timed out");
                }
                Action::Retry(idx) => {
                    let change = Transition {
                        from: &[UpgradeState::Failed, UpgradeState::TimedOut],
                        to: UpgradeState::Queued,
                        result_code: None,
                        result_msg: None,
                        // The failure stays readable (code, text) until the next release.
                        reason: Some(Reason::Retrying),
                        released_at: None,
                        count_push: false,
                        keep_result: true,
                    };
                    self.store
                        .transition(id, &campaign.product, &devices(&idx), &change)
                        .await?;
                }
                Action::Pause(reason) => {
                    warn!(campaign = id, %reason, "campaign paused");
                    self.store
                        .set_campaign_state(id, CampaignState::Paused, Some(&reason))
                        .await?;
                }
                Action::Abort(reason) => {
                    warn!(campaign = id, %reason, "campaign aborted");
                    self.stop(&campaign, CampaignState::Aborted, &reason)
                        .await?;
                }
                Action::Finish => self.finish(&campaign).await?,
                Action::Bake(wave) => self.start_bake(&campaign, wave, now).await?,
                Action::Judge(wave) => self.judge(&campaign, wave, now).await?,
            }
        }
        Ok(())
    }

    /// Why the campaign's queued devices are not being released now (`None`: nothing waits).
    pub async fn waiting(&self, id: i64) -> Result<Option<String>> {
        let campaign = self.store.campaign(id).await?;
        if !matches!(
            campaign.state,
            CampaignState::Running | CampaignState::Scheduled
        ) {
            return Ok(None);
        }
        let (_, slots, bakes) = self.snapshot(&campaign).await?;
        Ok(campaign::waiting(&PlanInput {
            now_ms: self.clock.now_ms(),
            state: campaign.state,
            strategy: &campaign.strategy,
            slots: &slots,
            bakes: &bakes,
        }))
    }

    /// The campaign's devices and bakes, as the planner reads them.
    async fn snapshot(&self, campaign: &Campaign) -> Result<(Vec<Upgrade>, Vec<Slot>, Vec<Bake>)> {
        let id = campaign.id;
        let upgrades = self.store.campaign_upgrades(id, None, i64::MAX, 0).await?;
        let slots: Vec<Slot> = upgrades
            .iter()
            .map(|u| Slot {
                wave: u.wave,
                state: u.status.state,
                attempts: u.attempts,
                released_at: u.released_at.map(Timestamp::as_ms),
            })
            .collect();
        let bakes: Vec<Bake> = match campaign.strategy.health {
            None => Vec::new(),
            Some(_) => self
                .store
                .campaign_bakes(id)
                .await?
                .into_iter()
                .map(|b| Bake {
                    wave: b.wave,
                    started_ms: b.started_at.as_ms(),
                    verdict: b.verdict,
                    accepted: b.accepted,
                })
                .collect(),
        };
        Ok((upgrades, slots, bakes))
    }

    pub(super) async fn finish(&self, campaign: &Campaign) -> Result<()> {
        self.store
            .set_campaign_state(campaign.id, CampaignState::Finished, None)
            .await?;
        let counts = self.store.campaign_counts(campaign.id).await?;
        info!(campaign = campaign.id, ?counts, "campaign finished");
        if campaign.kind == CampaignKind::Verification {
            let upgrades = self
                .store
                .campaign_upgrades(campaign.id, None, i64::MAX, 0)
                .await?;
            let (state, why) = verification_verdict(&upgrades);
            if let Some(why) = &why {
                self.store
                    .set_campaign_state(campaign.id, CampaignState::Finished, Some(why))
                    .await?;
            }
            self.store
                .set_firmware_state(campaign.firmware_id, state)
                .await?;
            info!(
                firmware = campaign.firmware_id,
                state = state.as_str(),
                why = why.as_deref().unwrap_or(""),
                "firmware verification done"
            );
        }
        Ok(())
    }

    /// Cancel or abort: the campaign ends, and every device not yet finished is canceled. A
    /// device that reports later is recorded (its version) but its upgrade stays canceled.
    pub(super) async fn stop(
        &self,
        campaign: &Campaign,
        state: CampaignState,
        reason: &str,
    ) -> Result<()> {
        self.store
            .set_campaign_state(campaign.id, state, Some(reason))
            .await?;
        let open: Vec<DeviceName> = self
            .store
            .campaign_upgrades(campaign.id, None, i64::MAX, 0)
            .await?
            .into_iter()
            .filter(|u| u.status.state.is_live())
            .map(|u| u.device)
            .collect();
        let change = Transition {
            from: OPEN,
            to: UpgradeState::Canceled,
            result_code: None,
            result_msg: Some(reason),
            reason: Some(Reason::Canceled),
            released_at: None,
            count_push: false,
            keep_result: false,
        };
        self.store
            .transition(campaign.id, &campaign.product, &open, &change)
            .await?;
        if campaign.kind == CampaignKind::Verification {
            self.store
                .set_firmware_state(campaign.firmware_id, FirmwareState::Uploaded)
                .await?;
        }
        Ok(())
    }
}

/// What a finished verification says of its image. A test device skipped (already there, or
/// newer) tells nothing about it; nor does one that timed out without ever receiving the offer
/// (it was offline): when only such devices fail, the image is *not verified* (back to
/// `uploaded`, with the reason), never `rejected`, which blames the image.
fn verification_verdict(upgrades: &[Upgrade]) -> (FirmwareState, Option<String>) {
    let tried: Vec<&Upgrade> = upgrades
        .iter()
        .filter(|u| u.status.state != UpgradeState::Skipped)
        .collect();
    let unreached = |u: &&&Upgrade| u.status.state == UpgradeState::TimedOut && u.pushes == 0;
    let failed = tried
        .iter()
        .filter(|u| u.status.state != UpgradeState::Succeeded)
        .count();
    let offline = tried.iter().filter(unreached).count();
    if failed == 0 {
        (FirmwareState::Verified, None)
    } else if failed == offline {
        let why = format!(
            "not verified: {offline} of {} test devices were offline and never received the offer",
            tried.len()
        );
        (FirmwareState::Uploaded, Some(why))
    } else {
        (FirmwareState::Rejected, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otter_core::{
        CampaignMode, DeviceName, Module, ProductId, UpgradeStatus, Version, VersionScheme,
    };

    fn upgrade(state: UpgradeState, pushes: i64) -> Upgrade {
        Upgrade {
            campaign_id: 1,
            product: ProductId::parse("P").unwrap(),
            device: DeviceName::parse("d").unwrap(),
            module: Module::parse("default").unwrap(),
            status: UpgradeStatus {
                target: Version::parse("2").unwrap(),
                state,
                percent: None,
                result_code: None,
                result_msg: None,
                reason: None,
            },
            pushes,
            ordinal: 0,
            wave: 0,
            attempts: 1,
            released_at: None,
            from_version: None,
            mode: CampaignMode::Push,
            allow_downgrade: false,
            version_scheme: VersionScheme::Opaque,
            created_at: 0.into(),
            updated_at: 0.into(),
        }
    }

    #[test]
    fn offline_test_devices_leave_the_image_unverified_not_rejected() {
        use UpgradeState as U;
        let ok = upgrade(U::Succeeded, 1);
        let offline = upgrade(U::TimedOut, 0);
        let silent = upgrade(U::TimedOut, 1);
        let broken = upgrade(U::Failed, 1);
        let skipped = upgrade(U::Skipped, 0);
        let verdict = |list: &[&Upgrade]| {
            let list: Vec<Upgrade> = list.iter().map(|u| (*u).clone()).collect();
            verification_verdict(&list)
        };
        assert_eq!(verdict(&[&ok, &skipped]), (FirmwareState::Verified, None));
        let (state, why) = verdict(&[&ok, &offline]);
        assert_eq!(state, FirmwareState::Uploaded);
        assert_eq!(
            why.as_deref(),
            Some("not verified: 1 of 2 test devices were offline and never received the offer")
        );
        assert_eq!(verdict(&[&ok, &silent]).0, FirmwareState::Rejected);
        assert_eq!(verdict(&[&offline, &broken]).0, FirmwareState::Rejected);
    }
}
