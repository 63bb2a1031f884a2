//! Health gates: what a bake measures (connects, offline devices, counters from health reports,
//! who came back) and the bakes themselves. Claims are conditional, so two nodes running one
//! campaign's planner start and judge each bake once.

use super::{Engine, corrupt};
use crate::*;
use otter_core::Timestamp;
use otter_core::health::Verdict;
use otter_core::{DeviceName, ProductId};
use sqlx::Row;
use std::collections::BTreeMap;

fn verdict(s: &str) -> Result<Verdict> {
    Verdict::parse(s).ok_or_else(|| corrupt(format!("verdict {s:?}")))
}

impl Engine {
    /// Adds a device's reported counters to its totals.
    pub async fn add_device_counters(
        &self,
        product: &ProductId,
        device: &DeviceName,
        counters: &BTreeMap<String, u64>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (name, n) in counters {
            sqlx::query(
                "INSERT INTO device_counters (product_id, device_name, name, total, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (product_id, device_name, name) DO UPDATE
                 SET total = device_counters.total + excluded.total, updated_at = excluded.updated_at",
            )
            .bind(product.as_str())
            .bind(device.as_str())
            .bind(name)
            .bind(i64::try_from(*n).unwrap_or(i64::MAX))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A device's health counters, totals so far.
    pub async fn device_counters(
        &self,
        product: &ProductId,
        device: &DeviceName,
    ) -> Result<BTreeMap<String, i64>> {
        sqlx::query("SELECT name, total FROM device_counters WHERE product_id = $1 AND device_name = $2 ORDER BY name")
            .bind(product.as_str())
            .bind(device.as_str())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("total")?)))
            .collect()
    }

    /// The counts a health gate after `wave` is judged on (see `HealthFacts`).
    pub async fn health_facts(&self, campaign_id: i64, wave: u32) -> Result<HealthFacts> {
        let row = sqlx::query(
            "SELECT
               COUNT(CASE WHEN u.wave <= $2 AND u.state = 'succeeded' THEN 1 END) AS came_back,
               COUNT(CASE WHEN u.wave <= $2 AND (u.reason = 'install_not_taken' OR u.state = 'timed_out') THEN 1 END) AS not_back,
               COUNT(CASE WHEN u.wave <= $2 AND u.state = 'succeeded' AND NOT d.online THEN 1 END) AS updated_offline,
               CAST(COALESCE(SUM(CASE WHEN u.wave <= $2 AND u.state = 'succeeded' THEN d.connects END), 0) AS BIGINT) AS updated_connects,
               COUNT(CASE WHEN u.wave > $2 AND u.state = 'queued' THEN 1 END) AS control,
               COUNT(CASE WHEN u.wave > $2 AND u.state = 'queued' AND NOT d.online THEN 1 END) AS control_offline,
               CAST(COALESCE(SUM(CASE WHEN u.wave > $2 AND u.state = 'queued' THEN d.connects END), 0) AS BIGINT) AS control_connects
             FROM upgrades u JOIN devices d ON d.product_id = u.product_id AND d.name = u.device_name
             WHERE u.campaign_id = $1",
        )
        .bind(campaign_id)
        .bind(i64::from(wave))
        .fetch_one(&self.pool)
        .await?;
        let counters = sqlx::query(
            "SELECT c.name, CAST(SUM(c.total) AS BIGINT) AS total FROM device_counters c
             JOIN upgrades u ON u.product_id = c.product_id AND u.device_name = c.device_name
             WHERE u.campaign_id = $1 AND u.wave <= $2 AND u.state = 'succeeded' GROUP BY c.name",
        )
        .bind(campaign_id)
        .bind(i64::from(wave))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("name")?,
                r.try_get::<i64, _>("total")?,
            ))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(HealthFacts {
            came_back: row.try_get("came_back")?,
            not_back: row.try_get("not_back")?,
            updated_offline: row.try_get("updated_offline")?,
            updated_connects: row.try_get("updated_connects")?,
            control: row.try_get("control")?,
            control_offline: row.try_get("control_offline")?,
            control_connects: row.try_get("control_connects")?,
            counters,
        })
    }

    /// Starts the bake after `wave` unless it was started already; whether this call did.
    pub async fn start_bake(
        &self,
        campaign_id: i64,
        wave: u32,
        at: i64,
        baseline: &HealthFacts,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO campaign_bakes (campaign_id, wave, started_at, baseline) VALUES ($1, $2, $3, $4)
             ON CONFLICT (campaign_id, wave) DO NOTHING",
        )
        .bind(campaign_id)
        .bind(i64::from(wave))
        .bind(at)
        .bind(serde_json::to_string(baseline).map_err(corrupt)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the judgement of a bake unless it was judged already; whether this call did.
    pub async fn judge_bake(
        &self,
        campaign_id: i64,
        wave: u32,
        at: i64,
        verdict: Verdict,
        evaluation: &serde_json::Value,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE campaign_bakes SET judged_at = $3, verdict = $4, evaluation = $5
             WHERE campaign_id = $1 AND wave = $2 AND judged_at IS NULL",
        )
        .bind(campaign_id)
        .bind(i64::from(wave))
        .bind(at)
        .bind(verdict.as_str())
        .bind(evaluation.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The operator resumed: every judged bake that held the campaign is accepted.
    pub async fn accept_bakes(&self, campaign_id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE campaign_bakes SET accepted = TRUE
             WHERE campaign_id = $1 AND judged_at IS NOT NULL AND verdict <> 'healthy'",
        )
        .bind(campaign_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A campaign's bakes, by wave.
    pub async fn campaign_bakes(&self, campaign_id: i64) -> Result<Vec<BakeRecord>> {
        let rows = sqlx::query("SELECT * FROM campaign_bakes WHERE campaign_id = $1 ORDER BY wave")
            .bind(campaign_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let baseline: String = r.try_get("baseline")?;
                let evaluation: Option<String> = r.try_get("evaluation")?;
                let v: Option<String> = r.try_get("verdict")?;
                Ok(BakeRecord {
                    campaign_id: r.try_get("campaign_id")?,
                    wave: u32::try_from(r.try_get::<i64, _>("wave")?).map_err(corrupt)?,
                    started_at: Timestamp::from(r.try_get::<i64, _>("started_at")?),
                    baseline: serde_json::from_str(&baseline).map_err(corrupt)?,
                    judged_at: r
                        .try_get::<Option<i64>, _>("judged_at")?
                        .map(Timestamp::from),
                    verdict: v.as_deref().map(verdict).transpose()?,
                    evaluation: evaluation
                        .map(|e| serde_json::from_str(&e))
                        .transpose()
                        .map_err(corrupt)?,
                    accepted: r.try_get("accepted")?,
                })
            })
            .collect()
    }
}
