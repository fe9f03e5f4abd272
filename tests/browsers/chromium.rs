//! Chromium, headless, driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3
//! in, fd 4 out, NUL-separated JSON): it opens each page in a tab and keeps the pages' console
//! messages and exceptions for failure messages.

use super::{find_binary, own_group, Browser, Engine, Group, Scratch};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

extern "C" {
    fn pipe2(fds: *mut i32, flags: i32) -> i32;
    fn fcntl(fd: i32, cmd: i32, arg: i32) -> i32;
    fn dup2(old: i32, new: i32) -> i32;
    fn close(fd: i32) -> i32;
}
const O_CLOEXEC: i32 = 0o2_000_000;
const F_DUPFD_CLOEXEC: i32 = 1030;

/// `$CHROMIUM`, else `chromium` / `chromium-browser` / `google-chrome` on PATH.
pub fn binary() -> PathBuf {
    find_binary(
        "CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
        "chromium",
    )
}

/// A close-on-exec pipe whose two ends are numbered >= 10 (so `dup2` onto 3 and 4 never clobbers
/// them): (read end, write end).
fn high_pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds points to two writable i32s.
    let rc = unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2 failed");
    let moved = fds.map(|fd| {
        // SAFETY: fd is a pipe end we own; the duplicate is ours too and the original is closed.
        unsafe {
            let high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
            assert!(high >= 10, "fcntl(F_DUPFD_CLOEXEC) failed");
            close(fd);
            high
        }
    });
    (moved[0], moved[1])
}

pub struct Chromium {
    // Fields drop in order: the processes, then the profile.
    process: Group,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    /// Events and stray messages seen so far (console output, exceptions), for failure messages.
    events: Vec<Value>,
    scratch: Scratch,
}

impl Chromium {
    pub fn open(urls: &[String]) -> Chromium {
        Chromium::open_with(urls, &[])
    }

    /// [`Chromium::open`] with extra command-line switches.
    pub fn open_with(urls: &[String], switches: &[String]) -> Chromium {
        let bin = binary();
        let scratch = Scratch::new(Engine::Chromium);
        let (browser_reads, we_write) = high_pipe();
        let (we_read, browser_writes) = high_pipe();
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-proxy-server",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--remote-debugging-pipe",
        ])
        .args(switches)
        .arg(format!(
            "--user-data-dir={}",
            scratch.dir.join("profile").display()
        ))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(scratch.log("chromium.log"))
        .stderr(scratch.log("chromium.err"));
        scratch.confine(&mut cmd);
        own_group(&mut cmd);
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if dup2(browser_reads, 3) != 3 || dup2(browser_writes, 4) != 4 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = Group::spawn("Chromium", &mut cmd);
        // SAFETY: the browser's ends now live in the child; ours are owned by the Files below.
        unsafe {
            close(browser_reads);
            close(browser_writes);
        }
        // SAFETY: we own these descriptors and hand each to exactly one File.
        let to_browser = unsafe { File::from_raw_fd(we_write) };
        let mut reader = unsafe { File::from_raw_fd(we_read) };
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    let value = serde_json::from_slice(&msg[..msg.len() - 1])
                        .unwrap_or_else(|e| json!({ "unparsable": e.to_string() }));
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        let mut browser = Chromium {
            process,
            to_browser,
            from_browser: rx,
            next_id: 0,
            events: Vec::new(),
            scratch,
        };
        for url in urls {
            browser.open_tab(url);
        }
        browser
    }

    /// Sends a command; returns its id.
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes) {
            panic!("writing to Chromium: {e}\n{}", self.diagnostics());
        }
        self.next_id
    }

    /// A command and its result (panics on a protocol error or after 15 s).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        let deadline = Instant::now() + Duration::from_secs(15);
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(msg) if msg["id"].as_u64() == Some(id) => break msg,
                Ok(msg) => self.events.push(msg),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "Chromium did not answer {method} in time\n{}",
                    self.diagnostics()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("Chromium closed the pipe\n{}", self.diagnostics())
                }
            }
        };
        if reply.get("error").is_some() {
            panic!("{method} failed: {reply}\n{}", self.diagnostics());
        }
        reply["result"].clone()
    }

    /// Opens a new tab on `url`, attached (its console and exceptions are kept).
    fn open_tab(&mut self, url: &str) {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {attached}"))
            .to_string();
        self.call(Some(&session), "Runtime.enable", json!({}));
    }
}

impl Browser for Chromium {
    fn diagnostics(&mut self) -> String {
        while let Ok(msg) = self.from_browser.try_recv() {
            self.events.push(msg);
        }
        let mut s = String::from("--- page console / exceptions ---\n");
        for e in &self.events {
            match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") => {
                    let args: Vec<String> = e["params"]["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| a["value"].to_string())
                        .collect();
                    s.push_str(&format!(
                        "console.{}: {}\n",
                        e["params"]["type"].as_str().unwrap_or("?"),
                        args.join(" ")
                    ));
                }
                Some("Runtime.exceptionThrown") => {
                    s.push_str(&format!("exception: {}\n", e["params"]["exceptionDetails"]));
                }
                _ => {}
            }
        }
        s.push_str(&self.scratch.tail("chromium.err", 30, &["dbus"]));
        s
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Browser.close is polite; the process group's SIGTERM and SIGKILL are the guarantee.
        self.next_id += 1;
        let mut bytes =
            serde_json::to_vec(&json!({ "id": self.next_id, "method": "Browser.close" }))
                .unwrap_or_default();
        bytes.push(0);
        let _ = self.to_browser.write_all(&bytes);
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.process.running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(25));
        }
    }
}
