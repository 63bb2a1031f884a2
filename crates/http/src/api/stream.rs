//! `GET /campaigns/{id}/stream`: a campaign's state and counts as server-sent events, for the
//! web console's live detail page (and any client that would rather not poll).
//!
//! The store is the truth and changes come from several places (device reports, the planner,
//! operators), so the stream samples it: one cheap grouped count every [`SAMPLE`], and an event
//! only when something changed. It sends the current snapshot at once, and ends after the
//! snapshot that shows the campaign finished, canceled or aborted.

use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use otter_core::UpgradeState;
use otter_core::campaign::Outcome;
use std::convert::Infallible;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const SAMPLE: Duration = Duration::from_millis(500);

/// The route and its documentation, from the handler's annotation.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default().routes(routes!(stream))
}

/// One `campaign` event's data.
type Snapshot = otter_api::CampaignSnapshot;

async fn snapshot(s: &ApiState, id: i64) -> Result<Snapshot, ApiError> {
    let c = s.store().await.campaign(id).await?;
    let counts = s.store().await.campaign_counts(id).await?;
    let firmware = s.store().await.firmware(c.firmware_id).await?;
    let reasons = s.store().await.campaign_reasons(id).await?;
    let failed = counts.get(UpgradeState::Failed) + counts.get(UpgradeState::TimedOut);
    Ok(Snapshot {
        id,
        outcome: Outcome::of(c.state, failed),
        retrying: super::campaigns::retrying(&reasons),
        state: c.state.as_str().to_owned(),
        reason: c.reason,
        counts: super::wire::counts(&counts),
        total: counts.total(),
        firmware_state: firmware.state.as_str().to_owned(),
    })
}

#[utoipa::path(get, path = "/campaigns/{id}/stream", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, description = "server-sent events: a `campaign` event (this JSON) whenever the campaign changed, ending once it is over", content_type = "text/event-stream", body = otter_api::CampaignSnapshot),
        (status = 404, body = otter_api::ErrorBody)))]
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
                        if last.as_ref().is_some_and(|l| is_final(&l.state)) {
                            return None;
                        }
                        tokio::time::sleep(SAMPLE).await;
                        match snapshot(&s, id).await {
                            Ok(snap) => snap,
                            Err(e) => {
                                let event = Event::default().event("error").data(e.to_string());
                                let done = Snapshot {
                                    state: "error".to_owned(),
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
