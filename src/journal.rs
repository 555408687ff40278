//! The delivery journal: one record of the latest events and of every event some
//! destination has not accepted, kept in a single Durable Object so the `/admin` endpoints
//! can list them. The per-event ledger decides delivery; the journal only reports it.

use serde::{Deserialize, Serialize};

use crate::ledger::Failing;

/// How many of the latest events the journal lists; older ones are dropped.
pub const RECENT_EVENTS_KEPT: u32 = 1000;
/// The most entries one `/admin` list returns.
pub const MAX_LIST_LIMIT: u32 = 500;

/// One event as the journal lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `delivered`, `queued`, `held`, `ignored`, `rejected`, ...
    pub outcome: String,
    pub at_ms: u64,
}

/// An event with at least one destination that has not accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub destinations: Vec<Failing>,
    pub updated_ms: u64,
}

/// A request from the worker to the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum JournalRequest {
    Seen(SeenEvent),
    /// Replaces what the journal knows of an event's failures; an empty list removes it.
    Failing(FailedEvent),
    Recent {
        limit: u32,
    },
    Failed {
        limit: u32,
    },
}

/// Reads a `?limit=` value for the admin lists: 50 by default, at most [`MAX_LIST_LIMIT`].
pub fn list_limit(query: Option<&str>) -> u32 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(50, |n| n.clamp(1, u64::from(MAX_LIST_LIMIT)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(list_limit(None), 50);
        assert_eq!(list_limit(Some("limit=5")), 5);
        assert_eq!(list_limit(Some("x=1&limit=0")), 1);
        assert_eq!(list_limit(Some("limit=100000")), MAX_LIST_LIMIT);
        assert_eq!(list_limit(Some("limit=lots")), 50);
        assert_eq!(list_limit(Some("limit=99999999999999")), MAX_LIST_LIMIT);
        assert_eq!(list_limit(Some("limit=-1")), 50);
    }

    #[test]
    fn requests_are_tagged_json() {
        let request = JournalRequest::Recent { limit: 3 };
        assert_eq!(
            serde_json::to_string(&request).expect("json"),
            r#"{"op":"recent","limit":3}"#
        );
    }
}
