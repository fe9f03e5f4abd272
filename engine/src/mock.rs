//! An in-memory [`Host`] for the request path's tests and the fuzz targets: header maps, route facts and
//! counters held in memory, and a record of what the filter did (the local reply it sent, the
//! response header edits, the counters it bumped).

use std::borrow::Cow;
use std::cell::RefCell;

use crate::engine::LocalReply;
use crate::host::{Headers, Host, RouteProperty};

/// One stream as Envoy would present it.
#[derive(Default)]
pub struct MockHost {
    /// Request headers in order (names lower case, as Envoy hands them over).
    pub request: Vec<(Vec<u8>, Vec<u8>)>,
    /// Response headers in order, as they reach the response hook.
    pub response: Vec<(Vec<u8>, Vec<u8>)>,
    /// `filter_metadata` strings of the route: `(namespace, key, value)`.
    pub route_metadata: Vec<(String, String, Vec<u8>)>,
    pub route_name: Option<Vec<u8>>,
    pub virtual_host: Option<Vec<u8>>,
    /// What the filter did.
    pub record: RefCell<Record>,
}

/// A local reply as sent: status, headers, response code details.
pub type Reply = (u16, Vec<(String, Vec<u8>)>, String);

/// What the filter asked of the host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Record {
    /// `(status, headers, details)` of each local reply.
    pub replies: Vec<Reply>,
    /// Response header edits in order: `(name, Some(value))` sets, `(name, None)` removes.
    pub edits: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Counter ids, once per increment.
    pub increments: Vec<usize>,
}

impl MockHost {
    /// The response headers after the recorded edits (a set replaces every header of that name
    /// where the first one was, or is appended; a remove drops them all).
    pub fn edited_response(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut headers = self.response.clone();
        for (name, value) in &self.record.borrow().edits {
            let first = headers
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(name));
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            if let Some(value) = value {
                let at = first.unwrap_or(headers.len()).min(headers.len());
                headers.insert(at, (name.clone(), value.clone()));
            }
        }
        headers
    }

    fn map(&self, map: Headers) -> &[(Vec<u8>, Vec<u8>)] {
        match map {
            Headers::Request => &self.request,
            Headers::Response => &self.response,
        }
    }
}

impl Host for MockHost {
    /// The counter's id: its place in the order the counters were defined.
    type Counter = usize;
    type Headers<'a> = Vec<(&'a [u8], &'a [u8])>;

    fn headers(&self, map: Headers) -> Self::Headers<'_> {
        self.map(map)
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect()
    }

    fn route(&self, property: RouteProperty) -> Option<Cow<'_, [u8]>> {
        let metadata = |namespace: &str, key: &str| {
            self.route_metadata
                .iter()
                .find(|(ns, k, _)| ns == namespace && k == key)
                .map(|(_, _, v)| v.as_slice())
        };
        match property {
            RouteProperty::MetadataPolicy => metadata("cors", "policy"),
            RouteProperty::IstioConfig => metadata("istio", "config"),
            RouteProperty::RouteName => self.route_name.as_deref(),
            RouteProperty::VirtualHostName => self.virtual_host.as_deref(),
        }
        .map(Cow::Borrowed)
    }

    fn set_response_header(&self, name: &str, value: &[u8]) {
        self.record
            .borrow_mut()
            .edits
            .push((name.as_bytes().to_vec(), Some(value.to_vec())));
    }

    fn remove_response_header(&self, name: &[u8]) {
        self.record.borrow_mut().edits.push((name.to_vec(), None));
    }

    fn send_response(&self, reply: &LocalReply<'_>) -> bool {
        let headers = reply
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .collect();
        self.record
            .borrow_mut()
            .replies
            .push((reply.status, headers, reply.details.to_owned()));
        true
    }

    fn increment(&self, counter: &usize) {
        self.record.borrow_mut().increments.push(*counter);
    }
}
