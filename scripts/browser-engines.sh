#!/bin/sh
# The browser engines the browser suite (tests/browser.rs) runs in here, for `make test`: prints
# them as BROWSERS wants them (chromium,firefox,webkit) and says on stderr, plainly, which engine
# is missing and what installs it. The suite's tests run in the engines listed (without any
# engine they fail: install one). With BROWSER_SUITE=required (CI, .ci/run) it lists all three,
# installed or not, so that a missing engine fails its tests.
set -eu

# any_of VAR BIN...: $VAR is set, or one of the BINs is on PATH.
any_of() {
  var=$1
  shift
  eval "[ -n \"\${$var:-}\" ]" && return 0
  for bin in "$@"; do
    command -v "$bin" >/dev/null 2>&1 && return 0
  done
  return 1
}

found=""
missing=""
check() { # key name package found?
  if [ "$4" = yes ]; then
    found="$found,$1"
  else
    echo "browser suite: $2 NOT RUN: not installed (apt-get install $3; .ci/run does)." >&2
    missing="$missing $2"
    if [ "${BROWSER_SUITE:-}" = required ]; then found="$found,$1"; fi
  fi
}
yes_no() { if "$@"; then echo yes; else echo no; fi; }

check chromium Chromium chromium "$(yes_no any_of CHROMIUM chromium chromium-browser google-chrome)"
check firefox Firefox firefox-esr "$(yes_no any_of FIREFOX firefox-esr firefox)"
check webkit WebKit "webkit2gtk-driver xvfb" \
  "$(if any_of WEBKIT_WEBDRIVER WebKitWebDriver && any_of XVFB Xvfb; then echo yes; else echo no; fi)"
if [ -n "$missing" ] && [ "${BROWSER_SUITE:-}" = required ]; then
  echo "browser suite: BROWSER_SUITE=required: the tests fail for$missing." >&2
fi
echo "${found#,}"
