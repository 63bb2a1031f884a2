//! `GET /campaigns/{id}/stream`: a campaign's state and counts as server-sent events, for the
//! web console's live detail page (and any client that would rather not poll).
//!
//! The store is the truth and changes come from several places (device reports, the planner,
//! operators), so the stream samples it: one cheap grouped count every [`SAMPLE`], and an event
//! only when something changed. It sends the current snapshot at once, and ends after the
//! snapshot that shows the campaign finished, canceled or aborted.

use super::{ApiError, ApiState};
use axum::Router;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;

const SAMPLE: Duration = Duration::from_millis(500);

pub fn routes() -> Router<ApiState> {
    Router::new().route("/campaigns/{id}/stream", get(stream))
}

/// One `campaign` event's data.
#[derive(Serialize, PartialEq, Clone)]
pub struct Snapshot {
    id: i64,
    state: &'static str,
    reason: Option<String>,
    counts: otter_store::StateCounts,
    total: i64,
    /// The firmware's verification state (changes when a verification campaign ends).
    firmware_state: &'static str,
}

async fn snapshot(s: &ApiState, id: i64) -> Result<Snapshot, ApiError> {
    let c = s.store().await.campaign(id).await?;
    let counts = s.store().await.campaign_counts(id).await?;
    let firmware = s.store().await.firmware(c.firmware_id).await?;
    Ok(Snapshot {
        id,
        state: c.state.as_str(),
        reason: c.reason,
        total: counts.total(),
        counts,
        firmware_state: firmware.state.as_str(),
    })
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/stream",
    responses((status = 200, description = "text/event-stream of `campaign` events: {id, state, reason, counts, total, firmware_state}"), (status = 404)))]
pub async fn stream(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let first = snapshot(&s, id).await?;
    let events = futures::stream::unfold(
        (s, Some(first), None::<Snapshot>),
        move |(s, mut next, last)| async move {
            loop {
                let current = match next.take() {
                    Some(snap) => snap,
                    None => {
                        // Ended: the last snapshot showed a campaign that will not change again.
                        if last.as_ref().is_some_and(|l| is_final(l.state)) {
                            return None;
                        }
                        tokio::time::sleep(SAMPLE).await;
                        match snapshot(&s, id).await {
                            Ok(snap) => snap,
                            Err(e) => {
                                let event = Event::default().event("error").data(e.to_string());
                                let done = Snapshot {
                                    state: "error",
                                    ..last.clone()?
                                };
                                return Some((Ok(event), (s, None, Some(done))));
                            }
                        }
                    }
                };
                if last.as_ref() != Some(&current) {
                    let event = Event::default()
                        .event("campaign")
                        .json_data(&current)
                        .unwrap_or_else(|_| Event::default().comment("unserializable"));
                    return Some((Ok(event), (s, None, Some(current))));
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn is_final(state: &str) -> bool {
    matches!(state, "finished" | "canceled" | "aborted" | "error")
}
