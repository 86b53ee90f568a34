//! Events: the stack's history as one line each (a replica started, crashed, turned healthy...).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventLevel {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix seconds.
    pub at: i64,
    pub level: EventLevel,
    /// What it is about: `web.1`, `db`, `stack`.
    pub subject: String,
    pub message: String,
}

impl Event {
    pub fn new(level: EventLevel, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            at: crate::now_unix(),
            level,
            subject: subject.into(),
            message: message.into(),
        }
    }
}
