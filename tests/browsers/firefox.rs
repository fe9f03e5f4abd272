//! Firefox, headless, no driver: `firefox-esr --headless --no-remote --profile <fresh dir> URL...`
//! opens each URL in a tab; the pages post their reports themselves.

use super::{find_binary, own_group, Browser, Engine, Group, Scratch};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `$FIREFOX`, else `firefox-esr` / `firefox` on PATH.
pub fn binary() -> PathBuf {
    find_binary("FIREFOX", &["firefox-esr", "firefox"], "firefox-esr")
}

/// A quiet fresh profile: no first-run pages, no update or telemetry traffic, no proxy.
const USER_JS: &str = r#"
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.auto", false);
user_pref("app.normandy.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.proxy.type", 0);
user_pref("browser.tabs.warnOnClose", false);
"#;

pub struct Firefox {
    // Fields drop in order: the process group, then the profile.
    process: Group,
    scratch: Scratch,
}

impl Firefox {
    pub fn open(urls: &[String]) -> Firefox {
        let bin = binary();
        let scratch = Scratch::new(Engine::Firefox);
        let profile = scratch.dir.join("profile");
        scratch.write("profile/user.js", USER_JS);
        let mut cmd = Command::new(&bin);
        cmd.args(["--headless", "--no-remote", "--profile"])
            .arg(&profile)
            .args(urls)
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(scratch.log("firefox.log"))
            .stderr(scratch.log("firefox.err"));
        scratch.confine(&mut cmd);
        let process = Group::spawn("Firefox", own_group(&mut cmd));
        Firefox { process, scratch }
    }
}

impl Browser for Firefox {
    fn diagnostics(&mut self) -> String {
        let running = if self.process.running() {
            "running"
        } else {
            "EXITED"
        };
        format!(
            "Firefox (pid {}) {running}\n{}{}",
            self.process.pid(),
            self.scratch.tail("firefox.log", 20, &[]),
            self.scratch.tail("firefox.err", 30, &[])
        )
    }
}
