//! What `envoy_dynamic_module_on_program_init` does: admit the hosting Envoy (`hosting`), bind
//! its callbacks (`resolve`), then say what is loaded. A refusal is written to standard error
//! (where Envoy's own log goes unless `--log-path` moves it): Envoy's log callback is one of the
//! callbacks that cannot be trusted in an Envoy the module is not built for.

use std::io::Write;

use crate::abi::{resolve, ABI_VERSION, CALLBACKS};
use crate::hosting::{admit as admit_host, refusal, BUILT_FOR, MODULE_VERSION};

pub fn admit() -> Result<(), ()> {
    let admitted = admit_host(CALLBACKS).and_then(|()| {
        resolve(crate::resolve::lookup).map_err(|missing| {
            refusal(&format!(
                "this Envoy does not export {missing}, which this module calls"
            ))
        })
    });
    if let Err(line) = admitted {
        let _ = writeln!(std::io::stderr(), "[critical][cors-proxy-wasm] {line}");
        return Err(());
    }
    crate::logger::init();
    log::info!(
        "cors-proxy-wasm {MODULE_VERSION} (dynamic module) loaded: built for Envoy {BUILT_FOR} \
         (dynamic-module ABI {}), and this Envoy exports exactly Envoy {BUILT_FOR}'s callbacks",
        ABI_VERSION.to_string_lossy()
    );
    Ok(())
}
