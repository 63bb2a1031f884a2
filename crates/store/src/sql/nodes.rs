//! Node membership: each `otter serve` sharing the database beats here every few seconds, and
//! reads back which nodes are live, so they can split device messages among themselves.

use super::Engine;
use crate::*;

impl Engine {
    /// Records that node `id` is alive at `now`; returns the ids of every node seen since
    /// `live_since`, sorted (the same list on every node), and forgets long-dead nodes.
    pub async fn node_heartbeat(&self, id: &str, now: i64, live_since: i64) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO nodes (id, seen_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A node silent for a day is gone for good; keep the table small.
        sqlx::query("DELETE FROM nodes WHERE seen_at < $1")
            .bind(now - 86_400_000)
            .execute(&mut *tx)
            .await?;
        let live = sqlx::query_scalar("SELECT id FROM nodes WHERE seen_at >= $1 ORDER BY id")
            .bind(live_since)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(live)
    }

    /// Takes node `id` out of the live set at once (a clean shutdown).
    pub async fn node_leave(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
