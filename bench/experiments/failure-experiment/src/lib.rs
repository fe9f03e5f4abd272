//! Traps the VM on `x-crash: 1`; otherwise adds `x-filter-ran: 1` to the response, so a
//! request that bypassed the filter (fail open) can be told from one it handled.
#![allow(clippy::panic)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CrashRoot) });
}}

struct CrashRoot;

impl Context for CrashRoot {}

impl RootContext for CrashRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CrashHttp))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct CrashHttp;

impl Context for CrashHttp {}

impl HttpContext for CrashHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.get_http_request_header("x-crash").as_deref() == Some("1") {
            panic!("crash-filter: x-crash requested");
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-filter-ran", Some("1"));
        Action::Continue
    }
}
