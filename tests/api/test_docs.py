"""`/schema` renders with no internet: every script, style and icon it needs comes from the API."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from litestar import Litestar
from litestar.testing import TestClient

EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, //host
CSS_REFERENCES = re.compile(r"@import|url\(\s*(?!['\"]?data:)", re.IGNORECASE)  # data: URIs are inline


class References(HTMLParser):
    """Every URL a tag of the page makes the browser load (or link to)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append((tag, value))


def test_the_docs_page_loads_nothing_from_outside_the_api(api: TestClient[Litestar]) -> None:
    page = api.get("/schema")
    references = References()
    references.feed(page.text)

    scripts = [url for tag, url in references.urls if tag == "script"]
    styles = [url for tag, url in references.urls if tag == "link" and not url.startswith("data:")]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert [url for _, url in references.urls if EXTERNAL.match(url)] == []
    assert len(scripts) >= 1 and len(styles) >= 1
    for url in scripts:
        answer = api.get(url)
        assert (answer.status_code, answer.headers["content-type"].split(";")[0]) == (200, "text/javascript"), url
        assert len(answer.content) > 10_000, url  # the UI itself, not a stub
    for url in styles:
        answer = api.get(url)
        assert (answer.status_code, answer.headers["content-type"].split(";")[0]) == (200, "text/css"), url
        assert CSS_REFERENCES.findall(answer.text) == [], f"{url} loads fonts or images from elsewhere"


def test_the_schema_the_page_shows_is_served_too(api: TestClient[Litestar]) -> None:
    schema = api.get("/schema/openapi.json")

    assert schema.status_code == 200
    assert "/v1/jobs" in schema.json()["paths"]
