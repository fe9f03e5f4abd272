//! The engine's log sink over Envoy's log (`envoy_dynamic_module_callback_log`), at the level
//! Envoy has now for dynamic modules (asked at each record, so `POST /logging` applies at once).

use cors_engine::host::LogSink;
use cors_engine::logging::{self, Logger};

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

struct EnvoyLog;

impl LogSink for EnvoyLog {
    fn enabled(&self, level: log::Level) -> bool {
        // SAFETY: a plain call.
        unsafe { envoy_dynamic_module_callback_log_enabled(self::level(level)) }
    }

    fn write(&self, level: log::Level, message: &str) {
        write(self::level(level), message);
    }

    fn critical(&self, message: &str) {
        write(LOG_CRITICAL, message);
    }
}

static LOGGER: Logger<EnvoyLog> = Logger(EnvoyLog);

/// Installs the logger (every level: Envoy decides per record), and the panic hook that logs a
/// panic at critical level (the hook that caught it then carries on as if the filter were not
/// there).
pub fn init() {
    logging::init(&LOGGER, log::LevelFilter::Trace);
}
