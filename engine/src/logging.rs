//! The `log` crate routed to the proxy's log, the same way for both hosts.

use crate::host::LogSink;

/// A `log::Log` over a host's [`LogSink`]; a host declares one as a `static`.
pub struct Logger<S>(pub S);

impl<S: LogSink> log::Log for Logger<S> {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.0.enabled(metadata.level())
    }

    fn log(&self, record: &log::Record) {
        if self.0.enabled(record.level()) {
            self.0.write(record.level(), &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger at `max` level, and a panic hook that writes the panic at critical level so
/// that it is never silent (the wasm VM aborts after it; the dynamic module's hook catches it).
pub fn init<S: LogSink>(logger: &'static Logger<S>, max: log::LevelFilter) {
    // Fails only if a logger is already set, which then stays in charge.
    let _ = log::set_logger(logger);
    log::set_max_level(max);
    std::panic::set_hook(Box::new(move |info| {
        logger.0.critical(&format!("cors-proxy-wasm panic: {info}"))
    }));
}
