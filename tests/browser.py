"""Opens a local HTML file in a real headless Chromium and reports how it rendered.

A helper for tests, not a test module. It drives the Debian ``chromium`` browser
through the Debian ``chromium-driver`` (``apt-get install chromium chromium-driver``)
with Selenium, given both paths explicitly so Selenium Manager never tries to
download a browser or a driver.

    from browser import render_report, require_chromium

    def test_report_renders(tmp_path):
        require_chromium()  # skips without Chromium, fails if AUTOENC_REQUIRE_BROWSER=1
        result = render_report(tmp_path / "report.html")
        assert result.problems() == []

To render several pages with one browser start, use ``with Browser() as b: b.render(path)``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

REQUIRE_ENV = "AUTOENC_REQUIRE_BROWSER"
PAGE_LOAD_TIMEOUT_S = 60
SCRIPT_TIMEOUT_S = 30
WINDOW_SIZE = (1280, 1024)
SRC_MAX_CHARS = 80

BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
DRIVER_CANDIDATES = (
    "chromedriver",
    "/usr/lib/chromium/chromedriver",
    "/usr/lib/chromium-browser/chromedriver",
)

# Installed before any of the page's own scripts run: records uncaught exceptions,
# unhandled promise rejections and elements (img, script, link, ...) that failed to load.
_CAPTURE_SCRIPT = r"""
(() => {
  if (window.__renderCheck) return;
  const rc = window.__renderCheck = {pageErrors: [], failedResources: []};
  window.addEventListener('error', (e) => {
    const t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      rc.failedResources.push([(t.tagName || '?').toLowerCase(), String(t.currentSrc || t.src || t.href)]);
    } else {
      const where = e.filename ? ` (${e.filename}:${e.lineno}:${e.colno})` : '';
      rc.pageErrors.push(String(e.error && e.error.stack ? e.error.stack.split('\n')[0] : e.message) + where);
    }
  }, true);
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    rc.pageErrors.push('Unhandled rejection: ' + String(r && r.stack ? r.stack.split('\n')[0] : r));
  });
})();
"""

# Run after load: makes lazy images load, waits for every <img> to settle (decode),
# then reports what the page looks like. Called with execute_async_script.
_INSPECT_SCRIPT = r"""
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
for (const img of imgs) { if (img.loading === 'lazy') img.loading = 'eager'; }
const settle = (img) => {
  const loaded = img.complete ? Promise.resolve()
    : new Promise((res) => { img.addEventListener('load', res, {once: true});
                              img.addEventListener('error', res, {once: true}); });
  return loaded.then(() => img.decode()).then(() => true, () => false);
};
Promise.all(imgs.map(settle)).then((decoded) => {
  const rc = window.__renderCheck || {pageErrors: [], failedResources: []};
  done({
    title: document.title,
    text: document.body ? document.body.innerText : '',
    height: Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0),
    width: Math.max(document.documentElement.scrollWidth, document.body ? document.body.scrollWidth : 0),
    images: imgs.map((img, i) => ({
      src: img.currentSrc || img.getAttribute('src') || '',
      complete: img.complete, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
      decoded: decoded[i],
    })),
    pageErrors: rc.pageErrors,
    failedResources: rc.failedResources,
  });
});
"""


@dataclass
class RenderResult:
    """What a page looked like once loaded in Chromium."""

    url: str
    title: str
    text: str  # document.body.innerText
    console_errors: list[str] = field(default_factory=list)  # SEVERE browser-log entries
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions, unhandled rejections
    failed_resources: list[str] = field(default_factory=list)  # "img <src>" etc. that fired an error event
    console_messages: list[str] = field(default_factory=list)  # every browser-log entry, "LEVEL message"
    images: int = 0  # number of <img> elements
    broken_images: list[str] = field(default_factory=list)  # their src, cut to SRC_MAX_CHARS
    image_sizes: list[tuple[int, int]] = field(default_factory=list)  # naturalWidth, naturalHeight per <img>
    page_height: int = 0  # scrollHeight in CSS px at WINDOW_SIZE width
    page_width: int = 0
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """Everything that went wrong, one line each; [] for a clean page.

        The same failure seen twice (an uncaught exception both in the console
        and in page_errors, a broken <img> also in failed_resources) is listed once.
        """
        broken = {f"img {s}" for s in self.broken_images}
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors if not _in_console(m, self.console_errors)]
            + [f"failed to load: {m}" for m in self.failed_resources if m not in broken]
            + [f"broken image: {s}" for s in self.broken_images]
        )


def _in_console(page_error: str, console_errors: list[str]) -> bool:
    message = page_error.removeprefix("Unhandled rejection: ").split(" (file:")[0]
    return any(message in c for c in console_errors)


def _short(src: str) -> str:
    return src if len(src) <= SRC_MAX_CHARS else src[: SRC_MAX_CHARS - 3] + "..."


def _which(name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def find_chromium() -> tuple[str, str] | None:
    """(browser path, chromedriver path), or None when either is missing.

    $AUTOENC_CHROMIUM and $AUTOENC_CHROMEDRIVER override the search.
    """
    browser_names = [os.environ["AUTOENC_CHROMIUM"]] if os.environ.get("AUTOENC_CHROMIUM") else []
    driver_names = [os.environ["AUTOENC_CHROMEDRIVER"]] if os.environ.get("AUTOENC_CHROMEDRIVER") else []
    browser = next(filter(None, map(_which, browser_names or BROWSER_CANDIDATES)), None)
    driver = next(filter(None, map(_which, driver_names or DRIVER_CANDIDATES)), None)
    return (browser, driver) if browser and driver else None


def missing_reason() -> str | None:
    """Why render_report cannot run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install 'selenium>=4.11')"
    if find_chromium() is None:
        return "Chromium or chromedriver not found (apt-get install chromium chromium-driver)"
    return None


def require_chromium() -> tuple[str, str]:
    """Paths for a test that needs the browser: skips the test when it is missing,
    or fails it when AUTOENC_REQUIRE_BROWSER=1 (as CI sets)."""
    import pytest

    reason = missing_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{REQUIRE_ENV}={os.environ[REQUIRE_ENV]} but {reason}", pytrace=False)
        pytest.skip(reason)
    found = find_chromium()
    assert found is not None
    return found


class Browser:
    """One headless Chromium session; render() any number of pages, then close().

    Use as a context manager so the browser and driver always shut down.
    """

    def __init__(self, paths: tuple[str, str] | None = None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        paths = paths or find_chromium()
        if paths is None:
            raise RuntimeError(missing_reason() or "Chromium not found")
        browser, driver = paths
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        try:
            self.driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
            self.driver.set_script_timeout(SCRIPT_TIMEOUT_S)
            self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _CAPTURE_SCRIPT})
        except BaseException:
            self.driver.quit()
            raise

    def render(self, path: str | os.PathLike, *, screenshot: str | os.PathLike | None = None) -> RenderResult:
        """Loads a local file (waits for the load event and every image), and reports on it.

        screenshot: where to save a PNG of the whole page, if wanted.
        """
        url = Path(path).resolve().as_uri()
        self.driver.get_log("browser")  # drop entries left from an earlier page
        self.driver.get(url)
        info = self.driver.execute_async_script(_INSPECT_SCRIPT)
        log = self.driver.get_log("browser")
        shot = None
        if screenshot is not None:
            shot = Path(screenshot)
            self._full_page_screenshot(shot, info["width"], info["height"])
        images = info["images"]
        return RenderResult(
            url=url,
            title=info["title"],
            text=info["text"],
            console_errors=[e["message"] for e in log if e.get("level") == "SEVERE"],
            page_errors=list(info["pageErrors"]),
            failed_resources=[f"{tag} {_short(url)}" for tag, url in info["failedResources"]],
            console_messages=[f"{e.get('level')} {e.get('message')}" for e in log],
            images=len(images),
            broken_images=[
                _short(i["src"])
                for i in images
                if not (i["complete"] and i["naturalWidth"] > 0 and i["decoded"])
            ],
            image_sizes=[(i["naturalWidth"], i["naturalHeight"]) for i in images],
            page_height=int(info["height"]),
            page_width=int(info["width"]),
            screenshot=shot,
        )

    def _full_page_screenshot(self, path: Path, width: int, height: int) -> None:
        import base64

        width = max(int(width), WINDOW_SIZE[0])
        height = max(int(height), 1)
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            data = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.driver.quit()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def render_report(
    path: str | os.PathLike,
    *,
    screenshot: str | os.PathLike | None = None,
    paths: tuple[str, str] | None = None,
) -> RenderResult:
    """Opens one local HTML file in a fresh headless Chromium and reports how it rendered."""
    with Browser(paths) as browser:
        return browser.render(path, screenshot=screenshot)
