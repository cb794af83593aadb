"""The browser tier: Debian's Chromium, driven by Playwright, against a whole `genq run`.

- One `genq run` for the tier (embedded services, simulators, free ports of its own), started
  as the end-to-end test starts it (tests/integration/test_genq_run.py).
- Chromium is Debian's /usr/bin/chromium (`make install` installs it as root); Playwright's own
  browser download is never used. Without Chromium, in CI (CI=true) every browser test fails
  saying how to install it; elsewhere they are reported as not run, with the command.
- Every page a test visits is saved as a PNG under test-output/browser/<test>/ (or the folder
  GENQ_BROWSER_OUTPUT names); a failing test also saves the page as it was at the failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.integration.test_genq_run import Stack, _stack_env, _start_stack
from tests.support import wait_for

CHROMIUM = Path(os.environ.get("GENQ_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get install -y chromium  (as root; or `sudo make install`)"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("GENQ_BROWSER_OUTPUT") or REPO / "test-output" / "browser")
_not_run: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _not_run:
        terminalreporter.write_sep("!", "BROWSER TESTS NOT RUN", red=True, bold=True)
        terminalreporter.write_line(f"The browser tests (tests/browser/) did not run: no Chromium at {CHROMIUM}.")
        terminalreporter.write_line(f"Install it: {INSTALL}")


@pytest.fixture(scope="session")
def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"Debian's Chromium is not installed at {CHROMIUM}; install it: {INSTALL}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"the browser tier must run in CI: {message}", pytrace=False)
    _not_run.append(message)
    pytest.skip(f"NOT RUN: {message}")


@pytest.fixture(scope="package")
def web_stack(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`genq run` for the browser tier (stopped when the tier is done), on ports of its own; orders
    are paid after 1.5 s."""
    env = _stack_env(tmp_path_factory.mktemp("web-stack"), external=False, SIM_AUTO_PAY_S="1.5")
    started = _start_stack(env)
    stack = next(started)
    stack.pace_vendors(running_s=1.0)
    yield stack
    stack.proc.send_signal(signal.SIGINT)
    stack.proc.wait(timeout=60)
    started.close()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
    yield launched
    launched.close()


@dataclass
class Shots:
    """Numbered screenshots of one test, under OUTPUT/<test name>/."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    def take(self, page: Page, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{len(self.taken) + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@dataclass
class Web:
    """One test's browser tab on the stack: `visit` opens a page and saves its screenshot."""

    stack: Stack
    page: Page
    shots: Shots

    def url(self, path: str) -> str:
        return self.stack.api + path

    def visit(self, path: str, name: str | None = None) -> Page:
        self.page.goto(self.url(path))
        self.page.wait_for_load_state("networkidle")
        self.shot(name or path)
        return self.page

    def shot(self, name: str) -> Path:
        return self.shots.take(self.page, name)

    def sign_in(self, phone: str) -> None:
        """Sign in as a person does: the phone, the code the SMS simulator received, the button."""
        page = self.visit("/app/login", "sign-in")
        page.get_by_label("Phone number").fill(phone)
        page.get_by_role("button", name="Send code").click()
        expect(page.get_by_label("Code from the text message")).to_be_visible()
        code = sms_code(self.stack, phone)
        page.get_by_label("Code from the text message").fill(code)
        self.shot("sign-in-code")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(self.url("/app"))
        expect(page.locator("#m-credits")).not_to_have_text("…")
        self.shot("workbench")


def new_phone() -> str:
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


def make_user(stack: Stack, credits: int, *, admin: bool = False) -> str:
    """A user made the way an operator makes one (`genq users create`); signs in by this phone."""
    phone = new_phone()
    stack.genq("users", "create", "--phone", phone, "--credits", str(credits), *(["--admin"] if admin else []))
    return phone


def sms_code(stack: Stack, phone: str) -> str:
    inbox = f"{stack.lines['sim-sms']}/__sim/sms/last"

    def code() -> str | None:
        answer = httpx.get(inbox, params={"phone": phone})
        return str(answer.json()["code"]) if answer.status_code == 200 else None

    return wait_for(code, timeout_s=30, what=f"the SMS code for {phone}")


def sim_config(stack: Stack, sim: str, **knobs: Any) -> dict[str, Any]:
    """Set a simulator's knobs; returns what they were, to put back."""
    url = f"{stack.lines[sim]}/__sim/config"
    before: dict[str, Any] = httpx.get(url).json()
    httpx.post(url, json=knobs).raise_for_status()
    return {k: before[k] for k in knobs if k in before}


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


@pytest.fixture
def web(web_stack: Stack, context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Web]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    folder = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)  # this run's pages only
    shots = Shots(folder)
    tab = Web(web_stack, page, shots)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shots.take(page, "at-failure")
    assert not errors, f"the page's scripts failed: {json.dumps(errors)}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
