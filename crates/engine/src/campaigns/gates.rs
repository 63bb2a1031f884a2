//! Health gates at work: starting a bake, judging it, and rolling a release back.

use super::*;

impl Campaigns {
    /// Starts the bake after `wave`: the counts it will be measured from are stored with it,
    /// so a restarted server judges the same bake the same way.
    pub(super) async fn start_bake(&self, campaign: &Campaign, wave: u32, now: i64) -> Result<()> {
        self.devices.presence.flush().await;
        let baseline = self.store.health_facts(campaign.id, wave).await?;
        if self
            .store
            .start_bake(campaign.id, wave, now, &baseline)
            .await?
        {
            info!(campaign = campaign.id, wave, "health gate: bake started");
        }
        Ok(())
    }

    /// Judges the bake after `wave`: evidence since its start, the policy's verdict, recorded;
    /// an unhealthy verdict pauses the campaign or rolls it back, an inconclusive one pauses.
    pub(super) async fn judge(&self, campaign: &Campaign, wave: u32, now: i64) -> Result<()> {
        let Some(policy) = &campaign.strategy.health else {
            return Ok(());
        };
        let Some(bake) = self
            .store
            .campaign_bakes(campaign.id)
            .await?
            .into_iter()
            .find(|b| b.wave == wave)
        else {
            return Ok(());
        };
        self.devices.presence.flush().await;
        let facts = self.store.health_facts(campaign.id, wave).await?;
        let evidence = evidence(&bake.baseline, &facts, now - bake.started_at.as_ms());
        let evaluation = health::evaluate(policy, &evidence);
        let record = serde_json::json!({ "evidence": evidence, "evaluation": evaluation });
        if !self
            .store
            .judge_bake(campaign.id, wave, now, evaluation.verdict, &record)
            .await?
        {
            return Ok(()); // judged already (another node, or before a restart)
        }
        metrics::counter!("otter_health_evaluations_total", "verdict" => evaluation.verdict.as_str())
            .increment(1);
        let reason = format!("wave {}: {}", wave + 1, evaluation.summary);
        match evaluation.verdict {
            Verdict::Healthy => info!(campaign = campaign.id, wave, %reason, "health gate passed"),
            Verdict::Inconclusive => {
                warn!(campaign = campaign.id, wave, %reason, "health gate inconclusive: paused");
                self.store
                    .set_campaign_state(campaign.id, CampaignState::Paused, Some(&reason))
                    .await?;
            }
            Verdict::Unhealthy if policy.on_unhealthy == OnUnhealthy::Rollback => {
                warn!(campaign = campaign.id, wave, %reason, "health gate tripped: rolling back");
                let rollback = self.roll_back(campaign).await?;
                let reason = format!("{reason}; {rollback}");
                self.stop(campaign, CampaignState::Aborted, &reason).await?;
            }
            Verdict::Unhealthy => {
                warn!(campaign = campaign.id, wave, %reason, "health gate tripped: paused");
                self.store
                    .set_campaign_state(campaign.id, CampaignState::Paused, Some(&reason))
                    .await?;
            }
        }
        Ok(())
    }

    /// Offers every device of `campaign` that took its release the version it came from, as
    /// one campaign per previous version (downgrade allowed, recorded), linked to `campaign`.
    /// Says what it did, for the campaign's reason.
    pub(super) async fn roll_back(&self, campaign: &Campaign) -> Result<String> {
        let upgrades = self
            .store
            .campaign_upgrades(campaign.id, Some(UpgradeState::Succeeded), i64::MAX, 0)
            .await?;
        let mut by_version: BTreeMap<Version, Vec<String>> = BTreeMap::new();
        let mut unknown = 0;
        for u in upgrades {
            match u.from_version {
                Some(v) => by_version.entry(v).or_default().push(u.device.to_string()),
                None => unknown += 1,
            }
        }
        let module = self.store.firmware(campaign.firmware_id).await?.module;
        let mut done = Vec::new();
        for (version, devices) in by_version {
            let count = devices.len();
            let req = CampaignRequest {
                product: campaign.product.to_string(),
                version: version.to_string(),
                module: Some(module.to_string()),
                selection: Selection {
                    devices,
                    ..Selection::default()
                },
                device_file: None,
                strategy: Strategy::default(),
                mode: CampaignMode::Push,
                dry_run: false,
                supersede: true,
                allow_downgrade: true,
                skip_verification: true,
                rollback_of: Some(campaign.id),
            };
            match Box::pin(self.create(req, CampaignKind::Rollout)).await {
                Ok(created) => {
                    let id = created.campaign.map_or(0, |c| c.id);
                    info!(campaign = campaign.id, rollback = id, %version, devices = count, "rollback campaign created");
                    done.push(format!(
                        "rollback campaign #{id}: {count} devices to {version}"
                    ));
                }
                Err(e) => {
                    error!(campaign = campaign.id, %version, error = %e, "rollback campaign refused");
                    done.push(format!("no rollback to {version} for {count} devices: {e}"));
                }
            }
        }
        if unknown > 0 {
            done.push(format!("{unknown} devices had no known previous version"));
        }
        if done.is_empty() {
            done.push("no device had taken the release".into());
        }
        Ok(done.join("; "))
    }
}

/// What happened during a bake: today's counts minus the bake's baseline.
fn evidence(
    baseline: &otter_store::HealthFacts,
    now: &otter_store::HealthFacts,
    ms: i64,
) -> Evidence {
    let n = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    let delta = |now: i64, then: i64| u64::try_from((now - then).max(0)).unwrap_or(0);
    Evidence {
        came_back: n(now.came_back),
        not_back: n(now.not_back),
        updated_offline: n(now.updated_offline),
        updated_connects: delta(now.updated_connects, baseline.updated_connects),
        control: n(now.control),
        control_offline: n(now.control_offline),
        control_connects: delta(now.control_connects, baseline.control_connects),
        hours: ms.max(0) as f64 / 3_600_000.0,
        counters: now
            .counters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    delta(*v, baseline.counters.get(k).copied().unwrap_or(0)),
                )
            })
            .collect(),
    }
}
