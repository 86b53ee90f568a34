//! What can go wrong on the request path, and the page each answers with. Like Pingora's
//! errors, each knows its side (the client's request, or the upstream) and so its status.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use crate::proxy::page;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeError {
    /// Downstream: the request is malformed.
    BadRequest(&'static str),
    /// Downstream: headers over `max_header`.
    HeadersTooLarge,
    /// Downstream: body over `max_body` (the limit in bytes).
    BodyTooLarge(u64),
    /// Downstream: the client stopped sending its body for `idle_timeout`.
    ClientTimeout,
    /// Downstream: the client went away mid-body (nginx's 499; nobody reads the page).
    ClientClosed,
    /// No route matches the host and path.
    NoRoute,
    /// The service has no replica that takes traffic now.
    NoHealthyReplica,
    /// Upstream: could not connect (refused, reset, connect timeout).
    UpstreamConnect,
    /// Upstream: no answer within `request_timeout`.
    UpstreamTimeout,
    /// Upstream: broke the protocol or the connection mid-answer.
    UpstreamProtocol,
}

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EdgeError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            EdgeError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            EdgeError::ClientClosed => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            EdgeError::NoRoute => StatusCode::NOT_FOUND,
            EdgeError::NoHealthyReplica => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::UpstreamConnect | EdgeError::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            EdgeError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn message(&self) -> String {
        match self {
            EdgeError::BadRequest(why) => format!("Bad request: {why}."),
            EdgeError::HeadersTooLarge => "The request headers are too large.".into(),
            EdgeError::BodyTooLarge(limit) => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            EdgeError::ClientTimeout => "The request body stopped arriving.".into(),
            EdgeError::ClientClosed => "The client closed the connection.".into(),
            EdgeError::NoRoute => "No application is routed at this address.".into(),
            EdgeError::NoHealthyReplica => {
                "No healthy replica can take this request right now; try again shortly.".into()
            }
            EdgeError::UpstreamConnect => "The application could not be reached.".into(),
            EdgeError::UpstreamTimeout => "The application did not answer in time.".into(),
            EdgeError::UpstreamProtocol => "The application's answer was broken.".into(),
        }
    }

    /// The page for this error.
    pub fn page(&self, request_id: &str) -> Response<Full<Bytes>> {
        let mut response = page(self.status(), &self.message(), request_id);
        if *self == EdgeError::NoHealthyReplica {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if matches!(
            self,
            EdgeError::BadRequest(_)
                | EdgeError::HeadersTooLarge
                | EdgeError::BodyTooLarge(_)
                | EdgeError::ClientTimeout
                | EdgeError::ClientClosed
        ) {
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_side() {
        assert_eq!(EdgeError::NoHealthyReplica.status(), 503);
        assert_eq!(EdgeError::UpstreamTimeout.status(), 504);
        assert_eq!(EdgeError::UpstreamConnect.status(), 502);
        assert_eq!(EdgeError::BodyTooLarge(1).status(), 413);
        assert_eq!(EdgeError::HeadersTooLarge.status(), 431);
        let page = EdgeError::NoHealthyReplica.page("abc");
        assert_eq!(page.headers()["retry-after"], "5");
    }
}
