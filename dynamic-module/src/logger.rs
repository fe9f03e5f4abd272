//! The `log` crate routed to Envoy's log (`envoy_dynamic_module_callback_log`), at the level
//! Envoy has now for dynamic modules (asked at each record, so `POST /logging` applies at once).

use crate::abi::*;

fn level(level: log::Level) -> u32 {
    match level {
        log::Level::Trace => LOG_TRACE,
        log::Level::Debug => LOG_DEBUG,
        log::Level::Info => LOG_INFO,
        log::Level::Warn => LOG_WARN,
        log::Level::Error => LOG_ERROR,
    }
}

fn write(level: u32, message: &str) {
    // SAFETY: a live slice, read during the call.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // SAFETY: a plain call.
        unsafe { envoy_dynamic_module_callback_log_enabled(level(metadata.level())) }
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            write(level(record.level()), &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Installs the logger, and a panic hook that logs a panic at critical level (the hook that
/// caught it then carries on as if the filter were not there).
pub fn init() {
    // Fails only if a logger is already set, which then stays in charge.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
    std::panic::set_hook(Box::new(|info| {
        write(LOG_CRITICAL, &format!("cors-proxy-wasm panic: {info}"))
    }));
}
