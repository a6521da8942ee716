"""The headless-Chromium checker (tests/browser.py) sees what a person would: it
fails a page with console errors, exceptions and broken images, and passes a clean one."""

from __future__ import annotations

import base64
import struct
import zlib

import browser
import pytest
from browser import REQUIRE_ENV, render_report, require_chromium


def png_bytes(width: int = 8, height: int = 6) -> bytes:
    """A real RGB PNG (a red/blue gradient), built by hand."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((255 * x // width, 0, 255 * y // height)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


GOOD_PNG = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
GOOD_SVG = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><rect width="20" height="10" fill="teal"/></svg>'
    ).decode()
)
BROKEN_PNG = "data:image/png;base64,AAAA"


def page(body: str, title: str = "Check") -> str:
    return f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>{body}</body></html>'


def test_bad_page_is_caught(tmp_path):
    require_chromium()
    html = tmp_path / "bad.html"
    html.write_text(
        page(
            f'<h1>Bad page</h1><img alt="good" src="{GOOD_PNG}"><img alt="broken" src="{BROKEN_PNG}">'
            "<script>console.error('boom');</script>"
            "<script>throw new Error('kaboom');</script>"
        )
    )
    result = render_report(html)

    assert result.title == "Check"
    assert "Bad page" in result.text
    assert result.images == 2
    assert result.broken_images == [BROKEN_PNG]
    assert result.image_sizes[0] == (8, 6)
    assert any("boom" in e for e in result.console_errors), result.console_errors
    assert any("kaboom" in e for e in result.console_errors), result.console_errors
    assert any("kaboom" in e for e in result.page_errors), result.page_errors
    assert not result.ok
    problems = result.problems()
    assert sum("broken image" in p for p in problems) == 1, problems
    assert sum("kaboom" in p for p in problems) == 1, problems


def test_clean_page_passes(tmp_path):
    require_chromium()
    html = tmp_path / "clean.html"
    html.write_text(
        page(
            f'<h1>Report</h1><p>All fine.</p><img alt="png" src="{GOOD_PNG}"><img alt="svg" src="{GOOD_SVG}">'
            "<script>console.log('just a log line');</script>",
            title="Clean",
        )
    )
    shot = tmp_path / "clean.png"
    result = render_report(html, screenshot=shot)

    assert result.problems() == []
    assert result.ok
    assert result.console_errors == [] and result.page_errors == [] and result.failed_resources == []
    assert result.images == 2 and result.broken_images == []
    assert result.image_sizes == [(8, 6), (20, 10)]
    assert result.title == "Clean"
    assert "All fine." in result.text
    assert any("just a log line" in m for m in result.console_messages)
    assert result.page_height > 0
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_browser_skips_or_fails_as_required(monkeypatch):
    """No Chromium: a skip with the install hint, or a failure when CI requires the browser."""
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install chromium chromium-driver|selenium"):
        require_chromium()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_ENV):
        require_chromium()
