//! The edge's one error type. Every failure on the request path, from a malformed head to a
//! replica that hung up, is an [`EdgeError`]: its [`ErrorKind`] (and so the status of the
//! page the client gets), the [`Side`] at fault, and whether sending the request again is safe
//! ([`Retry`]). Modelled on Pingora's `Error` (`etype`, `esource`, `retry`): callers decide on
//! these fields, never by downcasting or by matching an error's text.
//!
//! Knows nothing of routing or replicas; the page body comes from `proxy::page`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use crate::proxy::page;

/// Who caused a failure. Only [`Side::Replica`] failures may eject a replica or count against
/// its release; a client's slowness or bad bytes never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request, body or connection.
    Client,
    /// The replica (connecting to it, or its answer).
    Replica,
    /// The edge itself: no route, no replica to send to.
    Edge,
}

/// Whether the request may be sent again (to this or another replica) after this failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing reached an application (no connection was made): always safe.
    Safe,
    /// The request went out, but no byte of an answer came before the connection closed or
    /// reset: safe only for an idempotent request whose body was not streamed.
    IfIdempotent,
    /// Never: the replica may have acted on it, or the failure is the client's.
    Never,
}

/// What went wrong, and so which status the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or ambiguous: 400.
    BadRequest(&'static str),
    /// A transfer coding or feature the edge does not implement: 501 (nginx does the same).
    NotImplemented(&'static str),
    /// The request head is over `max_header` or has too many fields: 431.
    HeadersTooLarge,
    /// The body is over `max_body` (the limit in bytes): 413.
    BodyTooLarge(u64),
    /// The client stopped sending its body for `idle_timeout`: 408.
    ClientTimeout,
    /// The client went away mid-request (nginx's 499; nobody reads the page).
    ClientClosed,
    /// Refused by an allowlist (or, later, the WAF): 403.
    Forbidden,
    /// Over a rate limit: 429 with `Retry-After` (seconds).
    RateLimited(u64),
    /// The service is in maintenance mode: 503 with `Retry-After`.
    Maintenance,
    /// No route matches the host and path: 404.
    NoRoute,
    /// The service has no replica that takes traffic now: 503 with `Retry-After`.
    NoHealthyReplica,
    /// No connection to the replica (refused, unreachable, `connect_timeout`): 502.
    UpstreamConnect,
    /// The replica closed or reset the connection before any byte of an answer: 502.
    UpstreamClosed,
    /// The replica did not take the request or answer within `request_timeout`: 504.
    UpstreamTimeout,
    /// The replica broke the protocol or the connection mid-answer: 502.
    UpstreamProtocol,
}

impl ErrorKind {
    pub fn side(self) -> Side {
        match self {
            ErrorKind::BadRequest(_)
            | ErrorKind::NotImplemented(_)
            | ErrorKind::HeadersTooLarge
            | ErrorKind::BodyTooLarge(_)
            | ErrorKind::ClientTimeout
            | ErrorKind::ClientClosed
            | ErrorKind::Forbidden
            | ErrorKind::RateLimited(_) => Side::Client,
            ErrorKind::NoRoute | ErrorKind::NoHealthyReplica | ErrorKind::Maintenance => Side::Edge,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamClosed
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamProtocol => Side::Replica,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest(_) => StatusCode::BAD_REQUEST,
            ErrorKind::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::ClientClosed => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::NoHealthyReplica => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamClosed
            | ErrorKind::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// What the client's page says.
    fn message(self) -> String {
        match self {
            ErrorKind::BadRequest(why) => format!("Bad request: {why}."),
            ErrorKind::NotImplemented(what) => format!("Not implemented: {what}."),
            ErrorKind::HeadersTooLarge => "The request headers are too large.".into(),
            ErrorKind::BodyTooLarge(limit) => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            ErrorKind::ClientTimeout => "The request body stopped arriving.".into(),
            ErrorKind::ClientClosed => "The client closed the connection.".into(),
            ErrorKind::Forbidden => "This address may not reach this page.".into(),
            ErrorKind::RateLimited(_) => "Too many requests; slow down and try again.".into(),
            ErrorKind::Maintenance => {
                "The site is down for maintenance; please come back shortly.".into()
            }
            ErrorKind::NoRoute => "No application is routed at this address.".into(),
            ErrorKind::NoHealthyReplica => {
                "No healthy replica can take this request right now; try again shortly.".into()
            }
            ErrorKind::UpstreamConnect => "The application could not be reached.".into(),
            ErrorKind::UpstreamTimeout => "The application did not answer in time.".into(),
            ErrorKind::UpstreamClosed | ErrorKind::UpstreamProtocol => {
                "The application's answer was broken.".into()
            }
        }
    }
}

/// A failure on the request path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} ({side:?}){}", context.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
pub struct EdgeError {
    pub kind: ErrorKind,
    pub side: Side,
    pub retry: Retry,
    /// Detail for the edge's own log (never shown to the client: it may name replicas).
    pub context: Option<String>,
    /// What the page says instead of the kind's own message (an operator's maintenance text).
    pub page_message: Option<String>,
}

impl EdgeError {
    /// An error of `kind`, never retried.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            side: kind.side(),
            retry: Retry::Never,
            context: None,
            page_message: None,
        }
    }

    pub fn bad_request(why: &'static str) -> Self {
        Self::new(ErrorKind::BadRequest(why))
    }

    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Whether the request may go again to another replica after this error.
    /// `replayable`: idempotent, and its body (if any) was not streamed.
    pub fn may_retry(&self, replayable: bool) -> bool {
        match self.retry {
            Retry::Safe => true,
            Retry::IfIdempotent => replayable,
            Retry::Never => false,
        }
    }

    /// The page for this error.
    pub fn page(&self, request_id: &str) -> Response<Full<Bytes>> {
        let message = match &self.page_message {
            Some(text) => html_escape(text),
            None => self.kind.message(),
        };
        let mut response = page(self.status(), &message, request_id);
        let retry_after = match self.kind {
            ErrorKind::NoHealthyReplica => Some(5),
            ErrorKind::Maintenance => Some(60),
            ErrorKind::RateLimited(seconds) => Some(seconds.max(1)),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.side == Side::Client
            && !matches!(self.kind, ErrorKind::RateLimited(_) | ErrorKind::Forbidden)
        {
            // The connection's state is unknown after a client's error: it is not reused.
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// `text` safe inside HTML.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl From<ErrorKind> for EdgeError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl From<std::convert::Infallible> for EdgeError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_sides_follow_the_kind() {
        assert_eq!(EdgeError::new(ErrorKind::NoHealthyReplica).status(), 503);
        assert_eq!(EdgeError::new(ErrorKind::UpstreamTimeout).status(), 504);
        assert_eq!(EdgeError::new(ErrorKind::UpstreamConnect).status(), 502);
        assert_eq!(EdgeError::new(ErrorKind::UpstreamClosed).status(), 502);
        assert_eq!(EdgeError::new(ErrorKind::BodyTooLarge(1)).status(), 413);
        assert_eq!(EdgeError::new(ErrorKind::HeadersTooLarge).status(), 431);
        assert_eq!(EdgeError::new(ErrorKind::NotImplemented("x")).status(), 501);
        assert_eq!(EdgeError::new(ErrorKind::ClientTimeout).side, Side::Client);
        assert_eq!(
            EdgeError::new(ErrorKind::UpstreamClosed).side,
            Side::Replica
        );
        assert_eq!(EdgeError::new(ErrorKind::NoRoute).side, Side::Edge);
        let page = EdgeError::new(ErrorKind::NoHealthyReplica).page("abc");
        assert_eq!(page.headers()["retry-after"], "5");
        let page = EdgeError::new(ErrorKind::ClientTimeout).page("abc");
        assert_eq!(page.headers()["connection"], "close");
    }

    #[test]
    fn retries_follow_what_reached_the_replica() {
        let refused = EdgeError::new(ErrorKind::UpstreamConnect).retry(Retry::Safe);
        assert!(refused.may_retry(false));
        let closed = EdgeError::new(ErrorKind::UpstreamClosed).retry(Retry::IfIdempotent);
        assert!(closed.may_retry(true));
        assert!(!closed.may_retry(false));
        assert!(!EdgeError::new(ErrorKind::UpstreamProtocol).may_retry(true));
    }
}
