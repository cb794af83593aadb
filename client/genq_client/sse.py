"""Server-sent events, decoded line by line (the WHATWG rules the API's stream follows).

A blank line ends an event; `:` starts a comment (the API's keep-alive); `data` lines join with
newlines; an event cut off before its blank line (a dropped connection) is discarded, so its id is
never taken as received.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SseEvent:
    event: str  # "message" when the server named none
    data: str
    id: str | None = None


@dataclass
class SseDecoder:
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        """One line without its line break; returns the event a blank line completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SseEvent | None:
        event = SseEvent(self._event or "message", "\n".join(self._data), self._id) if self._data else None
        self._event, self._data, self._id = "", [], None
        return event
