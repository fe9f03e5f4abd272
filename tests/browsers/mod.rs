//! The three browser engines of the browser suite: Chromium (Blink), Firefox ESR (Gecko) and
//! WebKitGTK (WebKit, Safari's engine). Each opens a set of URLs, each in a tab of its own and all
//! at once, in a fresh profile; the pages post their reports to the page server (tests/browser.rs).
//!
//! - Chromium: `--headless`, driven over the DevTools protocol on a pipe ([`chromium`]);
//! - Firefox: `firefox-esr --headless --no-remote --profile <fresh dir> URL...` ([`firefox`]);
//! - WebKitGTK: `WebKitWebDriver` (W3C WebDriver over HTTP) starting its MiniBrowser on an
//!   `Xvfb` display of its own, since MiniBrowser has no headless mode ([`webkit`]).
//!
//! Every process is started here in a process group of its own with `PR_SET_PDEATHSIG` (it dies
//! with the thread that started it) and stopped by process id: [`Group`]'s `Drop` signals the whole
//! group (SIGTERM, then SIGKILL) and reaps the leader, and [`Scratch`] then removes the profile,
//! also when the test failed or timed out (the failure message carries the logs instead).

mod chromium;
mod firefox;
mod webkit;

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A browser engine of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
    WebKit,
}

/// A running browser with its pages open; dropping it stops every process it started and removes
/// its profile.
pub trait Browser: Send {
    /// What the browser said (its log tail; Chromium adds the pages' console and exceptions).
    fn diagnostics(&mut self) -> String;
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Chromium, Engine::Firefox, Engine::WebKit];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "Chromium",
            Engine::Firefox => "Firefox",
            Engine::WebKit => "WebKit",
        }
    }

    /// The engine's name in `BROWSERS`.
    pub fn key(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Firefox => "firefox",
            Engine::WebKit => "webkit",
        }
    }

    /// The engines this run covers: those named in `BROWSERS` (comma-separated keys; `make test`
    /// sets it to the installed ones and says which are missing), else all three. An engine that
    /// is covered but not installed fails its test: never a pass.
    pub fn selected() -> Vec<Engine> {
        let Some(list) = std::env::var_os("BROWSERS") else {
            return Engine::ALL.to_vec();
        };
        let list = list.to_string_lossy().to_string();
        let keys: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        for k in &keys {
            assert!(
                Engine::ALL.iter().any(|e| e.key() == *k),
                "BROWSERS={list}: unknown engine {k:?} (known: chromium, firefox, webkit)"
            );
        }
        assert!(
            !keys.is_empty(),
            "BROWSER SUITE DID NOT RUN: BROWSERS is empty (no browser engine installed; \
             `make test` says which are missing)"
        );
        Engine::ALL
            .into_iter()
            .filter(|e| keys.contains(&e.key()))
            .collect()
    }

    /// Fails (loudly, before anything starts) when the engine is not installed.
    pub fn require_installed(self) {
        match self {
            Engine::Chromium => {
                chromium::binary();
            }
            Engine::Firefox => {
                firefox::binary();
            }
            Engine::WebKit => webkit::binaries(),
        }
    }

    /// Starts the engine with each of `urls` open in a tab of its own.
    pub fn open(self, urls: &[String]) -> Box<dyn Browser> {
        match self {
            Engine::Chromium => Box::new(chromium::Chromium::open(urls)),
            Engine::Firefox => Box::new(firefox::Firefox::open(urls)),
            Engine::WebKit => Box::new(webkit::WebKit::open(urls)),
        }
    }
}

/// Chromium with extra command-line switches, each URL in a tab of its own.
pub fn chromium_with(urls: &[String], switches: &[String]) -> Box<dyn Browser> {
    Box::new(chromium::Chromium::open_with(urls, switches))
}

/// The first of `names` on PATH, or `$var` when set: the browser suite cannot run without it, so a
/// missing one fails with what to install.
fn find_binary(var: &str, names: &[&str], install: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BROWSER SUITE DID NOT RUN: {var}={} does not exist",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "\n\n*** BROWSER SUITE DID NOT RUN: none of {names:?} on PATH (nor ${var}). Install it: \
         `apt-get install {install}` (.ci/run does), or leave the engine out of BROWSERS (`make \
         test` does that for a missing engine and says so). This is a failure, not a skip. ***\n\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Processes and profiles
// ---------------------------------------------------------------------------------------------

extern "C" {
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}
const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Makes `cmd` start a process group of its own (so [`Group`] can signal the process and every
/// helper it forks) that is killed when the thread that starts it ends (`PR_SET_PDEATHSIG`: also
/// when the test process dies without unwinding).
fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0);
            Ok(())
        });
    }
    cmd
}

/// A started process leading a process group of its own (see [`own_group`]); dropping it stops the
/// whole group.
pub struct Group {
    child: Child,
    stopped: bool,
}

impl Group {
    /// Starts `cmd` (already given its own group by [`own_group`]).
    fn spawn(what: &str, cmd: &mut Command) -> Group {
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "BROWSER SUITE DID NOT RUN: cannot start {what} ({:?}): {e}",
                cmd.get_program()
            )
        });
        Group {
            child,
            stopped: false,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the group's leader is still running.
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` to the group, as long as a process of it exists (a zombie too: the group's
    /// id cannot have been given to anyone else then).
    fn signal(&self, signal: i32) {
        let pgid = self.pid();
        if group_has(pgid, true) {
            // SAFETY: a plain syscall, on the process group this guard created.
            unsafe { kill(-pgid, signal) };
        }
    }

    /// SIGTERM to the group, up to `grace` for the leader to end, then SIGKILL to the group; the
    /// leader is reaped. Once only.
    fn stop(&mut self, grace: Duration) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        self.signal(SIGTERM);
        let deadline = Instant::now() + grace;
        while self.running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(25));
        }
        // Helpers that outlive the leader (renderers, content and web processes) go too.
        self.signal(SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Up to a second for the rest of the group to be gone (zombies waiting for init to reap
        // them write nothing).
        let deadline = Instant::now() + Duration::from_secs(1);
        while group_has(self.pid(), false) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Whether group `pgid` has a process (`zombies`: counting those that have ended but are not
/// reaped yet), from `/proc/<pid>/stat`: `pid (comm) state ppid pgrp ...`.
fn group_has(pgid: i32, zombies: bool) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // comm may hold spaces and parentheses: the fields start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        fields.len() > 2 && (zombies || fields[0] != "Z") && fields[2] == pgid.to_string()
    })
}

/// A browser's scratch directory (profile, HOME, logs): removed on drop, failed test or not.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    fn new(engine: Engine) -> Scratch {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_dead_profiles);
        Scratch {
            dir: crate::support::scratch_dir(&format!("browser-{}", engine.key())),
        }
    }

    /// A log file in the directory, for a process's stdout or stderr.
    fn log(&self, name: &str) -> Stdio {
        Stdio::from(
            File::create(self.dir.join(name))
                .unwrap_or_else(|e| panic!("create {}: {e}", self.dir.join(name).display())),
        )
    }

    /// The last `lines` lines of a log file, without lines containing any of `noise`.
    fn tail(&self, name: &str, lines: usize, noise: &[&str]) -> String {
        tail(&self.dir.join(name), lines, noise)
    }

    /// Points HOME and the XDG directories into the scratch directory, so nothing the browser
    /// writes (caches, settings, crash reports) lands outside it.
    fn confine(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_CACHE_HOME", self.dir.join("cache"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .env("TMPDIR", &self.dir);
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A process that was still exiting may recreate a file: try a few times.
        for _ in 0..5 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Removes the browser directories (`cors-e2e-<pid>-<n>-browser-<engine>`) of test processes that
/// are gone: a process killed outright (SIGKILL) cannot remove its own, though its browsers die
/// with it (`PR_SET_PDEATHSIG`).
fn sweep_dead_profiles() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("cors-e2e-") else {
            continue;
        };
        let mut parts = rest.splitn(3, '-');
        let (Some(pid), Some(_), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let dead = pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        });
        if tag.starts_with("browser-") && dead {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn tail(path: &Path, lines: usize, noise: &[&str]) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !noise.iter().any(|n| l.contains(n)))
        .collect();
    let start = kept.len().saturating_sub(lines);
    let mut s = format!("--- {} (last {lines} lines) ---\n", path.display());
    for l in &kept[start..] {
        s.push_str(l);
        s.push('\n');
    }
    s
}
