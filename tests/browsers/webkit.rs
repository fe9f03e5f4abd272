//! WebKitGTK (Safari's engine), driven over plain W3C WebDriver HTTP by `WebKitWebDriver`, which
//! starts its MiniBrowser (`--automation`). MiniBrowser has no headless mode: it runs on an `Xvfb`
//! of its own (`-displayfd` picks a free display). The first page opens in the session's window,
//! every other one in a new tab; the pages post their reports themselves.

use super::{find_binary, own_group, Browser, Engine, Group, Scratch};
use crate::support::{free_port, Req};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::thread;
use std::time::{Duration, Instant};

/// `WebKitWebDriver` (`$WEBKIT_WEBDRIVER`) and `Xvfb` on PATH.
pub fn binaries() {
    webdriver();
    xvfb();
}

fn webdriver() -> PathBuf {
    find_binary(
        "WEBKIT_WEBDRIVER",
        &["WebKitWebDriver"],
        "webkit2gtk-driver",
    )
}

fn xvfb() -> PathBuf {
    find_binary("XVFB", &["Xvfb"], "xvfb")
}

pub struct WebKit {
    // Fields drop in order (after Drop::drop has ended the session): the driver with its
    // MiniBrowser, the X server, then the scratch directory.
    driver: Group,
    xvfb: Group,
    port: u16,
    session: Option<String>,
    scratch: Scratch,
}

impl WebKit {
    pub fn open(urls: &[String]) -> WebKit {
        let (driver_bin, xvfb_bin) = (webdriver(), xvfb());
        let scratch = Scratch::new(Engine::WebKit);
        // Xvfb writes the display it chose to the fd given by -displayfd: its stdout here.
        let mut cmd = Command::new(&xvfb_bin);
        cmd.args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x1024x24",
            "-nolisten",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(scratch.log("xvfb.err"));
        let mut xvfb = Group::spawn("Xvfb", own_group(&mut cmd));
        let stdout = xvfb.child.stdout.take().expect("Xvfb stdout");
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Drained until Xvfb ends, so that it never writes to a closed pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let display = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| {
                panic!(
                    "Xvfb did not report a display\n{}",
                    scratch.tail("xvfb.err", 20, &[])
                )
            });

        let port = free_port();
        let mut cmd = Command::new(&driver_bin);
        cmd.arg(format!("--port={port}"))
            .env("DISPLAY", format!(":{display}"))
            .env_remove("WAYLAND_DISPLAY")
            .env("GDK_BACKEND", "x11")
            .stdin(Stdio::null())
            .stdout(scratch.log("webdriver.log"))
            .stderr(scratch.log("webdriver.err"));
        scratch.confine(&mut cmd);
        let driver = Group::spawn("WebKitWebDriver", own_group(&mut cmd));
        let mut browser = WebKit {
            driver,
            xvfb,
            port,
            session: None,
            scratch,
        };
        browser.wait_ready();
        let created = browser.call(
            "POST",
            "/session",
            json!({ "capabilities": { "alwaysMatch": {
                "webkitgtk:browserOptions": { "args": ["--automation"] }
            } } }),
        );
        let session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("WebKitWebDriver gave no session: {created}"))
            .to_string();
        browser.session = Some(session.clone());
        for (i, url) in urls.iter().enumerate() {
            if i > 0 {
                let tab = browser.call(
                    "POST",
                    &format!("/session/{session}/window/new"),
                    json!({ "type": "tab" }),
                );
                let handle = tab["handle"].clone();
                browser.call(
                    "POST",
                    &format!("/session/{session}/window"),
                    json!({ "handle": handle }),
                );
            }
            // Returns once the page has loaded; its scripts go on running.
            browser.call(
                "POST",
                &format!("/session/{session}/url"),
                json!({ "url": url }),
            );
        }
        browser
    }

    /// `GET /status` until the driver is ready (20 s).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = Req::get("/status").try_send(self.port) {
                if r.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline || !self.driver.running() {
                let port = self.port;
                panic!(
                    "WebKitWebDriver did not become ready on port {port}\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A WebDriver command; returns its `value` (panics on an error answer).
    fn call(&mut self, method: &str, path: &str, body: Value) -> Value {
        let req = Req::new(method, path)
            .header("Content-Type", "application/json")
            .body(body.to_string().as_bytes());
        let r = match req.try_send(self.port) {
            Ok(r) => r,
            Err(e) => panic!("WebDriver {method} {path}: {e}\n{}", self.diagnostics()),
        };
        let answer: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if r.status != 200 {
            panic!(
                "WebDriver {method} {path}: {} {}\n{}",
                r.status,
                r.text(),
                self.diagnostics()
            );
        }
        answer["value"].clone()
    }
}

impl Browser for WebKit {
    fn diagnostics(&mut self) -> String {
        format!(
            "{}{}{}",
            self.scratch.tail("webdriver.log", 20, &[]),
            self.scratch.tail("webdriver.err", 30, &[]),
            self.scratch.tail("xvfb.err", 10, &[])
        )
    }
}

impl Drop for WebKit {
    fn drop(&mut self) {
        // Ending the session closes MiniBrowser; the process groups' signals are the guarantee.
        if let Some(session) = self.session.take() {
            let _ = Req::new("DELETE", &format!("/session/{session}")).try_send(self.port);
        }
        // The driver's group first (MiniBrowser and its web processes), then the X server, which
        // removes its lock file and socket on SIGTERM.
        self.driver.stop(Duration::from_secs(3));
        self.xvfb.stop(Duration::from_secs(3));
    }
}
