//! The outbox of result reports (burning, done, failed, the new version). They matter to the
//! server, and rumqttc forgets everything it had queued when a clean-session connection drops,
//! so they are kept here, persisted, until the broker acknowledges them, and sent again after
//! every reconnect (and after a restart). Progress percentages are not results: they go out at
//! QoS 0 and may be lost.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state;

/// Most reports kept; the oldest go first (a device offline for long keeps the latest story).
const MAX_ENTRIES: usize = 64;

/// A result report, dialect-neutral.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Report {
    Version {
        version: String,
    },
    Burning {
        version: String,
    },
    Done {
        version: String,
    },
    Failed {
        version: String,
        code: i32,
        message: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    next_id: u64,
    entries: VecDeque<(u64, Report)>,
}

/// Persisted FIFO of unacknowledged reports.
#[derive(Debug)]
pub(crate) struct Outbox {
    path: PathBuf,
    saved: Saved,
}

impl Outbox {
    /// Loads the outbox of the state dir (empty when missing or unreadable).
    pub(crate) fn load(dir: &Path) -> Outbox {
        let path = dir.join("outbox.json");
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(error = %err, "unreadable outbox; starting empty");
                Saved::default()
            }),
            Err(_) => Saved::default(),
        };
        Outbox { path, saved }
    }

    /// Adds a report; returns its id.
    pub(crate) fn push(&mut self, report: Report) -> u64 {
        let id = self.saved.next_id;
        self.saved.next_id += 1;
        self.saved.entries.push_back((id, report));
        while self.saved.entries.len() > MAX_ENTRIES {
            self.saved.entries.pop_front();
        }
        self.persist();
        id
    }

    /// The broker has the report: forget it.
    pub(crate) fn ack(&mut self, id: u64) {
        let before = self.saved.entries.len();
        self.saved.entries.retain(|(i, _)| *i != id);
        if self.saved.entries.len() != before {
            self.persist();
        }
    }

    /// Unacknowledged reports, oldest first.
    pub(crate) fn entries(&self) -> Vec<(u64, Report)> {
        self.saved.entries.iter().cloned().collect()
    }

    fn persist(&self) {
        let written = serde_json::to_vec(&self.saved)
            .map_err(std::io::Error::other)
            .and_then(|json| state::write_atomic(&self.path, &json));
        if let Err(err) = written {
            tracing::warn!(error = %err, "cannot persist the outbox; reports are kept in memory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::load(dir.path());
        let a = o.push(Report::Burning {
            version: "2".into(),
        });
        let b = o.push(Report::Version {
            version: "2".into(),
        });
        o.ack(a);
        let again = Outbox::load(dir.path());
        assert_eq!(
            again.entries(),
            vec![(
                b,
                Report::Version {
                    version: "2".into()
                }
            )]
        );
        let mut again = again;
        assert_eq!(
            again.push(Report::Done {
                version: "3".into()
            }),
            b + 1
        );
    }
}
