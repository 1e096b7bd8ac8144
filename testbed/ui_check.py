"""The sandbox's UI in a real browser, through the path a user takes.

Debian's Chromium (package `chromium`), driven by Playwright, opens the UI's URL; with basic auth
on, the UI shows its login page (one field for the whole `user:password`, checked against
`/api/admin/version`). A wrong string must be refused there; the stack's own string must get in.
Then, clicking through the sidebar as a person would, the Work Pools page must list the stack's
pool and the Runs page the sample run, Completed. A wrong `PREFECT_UI_API_URL` or a broken auth
setting fails one of those steps, and every API response the UI got after logging in must be a
success.

    python -m testbed.ui_check [--stack selfhosted-dev] [--screenshot docs/sandbox-ui.png]

runs a sandbox of the stack, the check, and keeps the Runs page as a picture (`make screenshot`).
Playwright's own browser download is not used: `executable_path` is Debian's binary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# Debian's `chromium` package (/usr/bin/chromium is a shell wrapper around it); else Google
# Chrome where a machine has it instead (GitHub's Ubuntu runners).
BROWSERS = (Path("/usr/lib/chromium/chromium"), Path("/opt/google/chrome/chrome"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-extensions", "--disable-sync",
         "--no-first-run", "--mute-audio"]
VIEWPORT = {"width": 1400, "height": 900}
STEP_TIMEOUT_MS = 60_000


def browser() -> Optional[Path]:
    return next((path for path in BROWSERS if path.exists()), None)


def missing() -> str:
    """Why the check cannot run here ('' when it can)."""
    if browser() is None:
        return f"no Chromium at {BROWSERS[0]} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (make install)"
    return ""


@dataclass
class Seen:
    """What the browser showed (the login steps only with an auth string)."""
    login_page: bool = False
    wrong_string_refused: bool = False
    logged_in: bool = False
    pool_listed: bool = False
    run_listed: bool = False
    run_state: str = ""
    # API responses after logging in that were not a success: "status method url".
    failed_api_calls: list[str] = field(default_factory=list)


def look(ui_url: str, auth_string: Optional[str], pool: str, flow_name: str, run_name: str,
         screenshot: Optional[Path] = None) -> Seen:
    from playwright.sync_api import sync_playwright

    seen = Seen()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(browser()), args=FLAGS,
                                              headless=True)
        try:
            page = chromium.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(ui_url)
            if auth_string:
                field_ = page.get_by_placeholder("admin:pass")
                field_.wait_for()
                seen.login_page = "/login" in page.url
                user = auth_string.partition(":")[0]
                field_.fill(f"{user}:not-the-password")
                page.get_by_role("button", name="Login").click()
                page.get_by_text("Invalid credentials").wait_for()
                seen.wrong_string_refused = "/login" in page.url
                field_.fill(auth_string)
                page.get_by_role("button", name="Login").click()
            page.get_by_role("link", name="Work Pools").wait_for()
            seen.logged_in = "/login" not in page.url
            page.on("response", lambda response: seen.failed_api_calls.append(
                f"{response.status} {response.request.method} {response.url}")
                if "/api/" in response.url and response.status >= 400 else None)

            page.get_by_role("link", name="Work Pools").click()
            page.get_by_text(pool, exact=True).first.wait_for()
            seen.pool_listed = True

            page.get_by_role("link", name="Runs", exact=True).click()
            run = page.get_by_role("link", name=run_name)
            run.wait_for()
            seen.run_listed = True
            # The run's card: its flow and name, its state, its pool.
            card = page.locator("div", has=run).filter(has_text=pool).last
            card.get_by_text("Completed").wait_for()
            seen.run_state = "Completed"
            card.get_by_text(flow_name, exact=True).wait_for()
            page.wait_for_load_state("networkidle")
            if screenshot is not None:
                page.wait_for_timeout(2000)  # the duration chart draws after its data arrives
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
        finally:
            chromium.close()
    return seen


def main(argv: Optional[list[str]] = None) -> int:
    from testbed.platform_client import SandboxProcess

    parser = argparse.ArgumentParser(prog="python -m testbed.ui_check")
    parser.add_argument("--stack", default="selfhosted-dev")
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args(argv)
    if missing():
        print(f"cannot check the UI: {missing()}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ui-check-") as state:
        sandbox = SandboxProcess(args.stack, Path(state), echo=True)
        try:
            facts = sandbox.wait_ready()
            run = sandbox.call("GET", f"/flow_runs/{sandbox.sample_run_id()}")
            flow = sandbox.call("GET", f"/flows/{run['flow_id']}")
            seen = look(facts["ui"], sandbox.auth_string, facts["pool"], flow["name"],
                        run["name"], args.screenshot)
        finally:
            sandbox.interrupt()
    print(seen)
    ok = seen.logged_in and seen.pool_listed and seen.run_state == "Completed"
    return 0 if ok and not seen.failed_api_calls else 1


if __name__ == "__main__":
    sys.exit(main())
