//! What the request path ([`crate::filter`]) asks of the proxy, behind a trait: the proxy-wasm
//! filter (the root crate) and the Envoy dynamic module (`dynamic-module/`) each implement it
//! over their own ABI; [`crate::mock::MockHost`] answers from memory for the tests and the fuzz
//! targets. Every method takes `&self`: a host is the handle of one hook of one stream.

use std::borrow::Cow;

use crate::engine::LocalReply;

/// A route attribute or route metadata string the routing reads (docs/routing.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteProperty {
    /// The route's `filter_metadata.cors.policy`.
    MetadataPolicy,
    /// The route's `filter_metadata.istio.config` (set by Istio on the routes it generates).
    IstioConfig,
    /// `xds.route_name`.
    RouteName,
    /// `xds.virtual_host_name`.
    VirtualHostName,
}

/// Which header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    Response,
}

/// A header map as a host reads it: its entries in order (lower-case names, as Envoy hands them
/// over), borrowed from the map.
pub trait HeaderList {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])>;
}

impl HeaderList for Vec<(&[u8], &[u8])> {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter().copied()
    }
}

/// The calls one hook of one stream makes into the proxy.
pub trait Host {
    /// A counter as the host defined it when the policy was loaded.
    type Counter;
    /// A header map as this host reads it.
    type Headers<'a>: HeaderList
    where
        Self: 'a;

    /// Every header of a map.
    fn headers(&self, map: Headers) -> Self::Headers<'_>;
    /// A route attribute or metadata string; `None` when absent or unreadable.
    fn route(&self, property: RouteProperty) -> Option<Cow<'_, [u8]>>;
    /// Sets a response header, replacing every header of that name.
    fn set_response_header(&self, name: &str, value: &[u8]);
    /// Removes every response header of that name.
    fn remove_response_header(&self, name: &[u8]);
    /// Answers the request locally with an empty body; `false` if the proxy refused. The request
    /// path does not touch the stream's state after this call: the proxy may run the stream's
    /// other hooks (or end it) before the call returns.
    fn send_response(&self, reply: &LocalReply<'_>) -> bool;
    /// Adds one to a counter.
    fn increment(&self, counter: &Self::Counter);
}

/// How a host writes log lines: the `log` crate is routed to it by [`crate::logging::init`].
pub trait LogSink: Send + Sync + 'static {
    /// Whether a record at this level would be written now.
    fn enabled(&self, level: log::Level) -> bool;
    /// Writes one line at a level.
    fn write(&self, level: log::Level, message: &str);
    /// Writes one line at Envoy's critical level (a panic).
    fn critical(&self, message: &str);
}
