"""Redaction of personal data in JSON bodies for wasmgate, in Python.

Masks card numbers (13-19 digits that pass the Luhn check, spaces or dashes
allowed), e-mail addresses, and the whole value of configured keys such as
`password`, in request bodies on their way to the upstream and, if asked, in
response bodies on their way to the client. Bodies that are not JSON pass
through untouched. Each body it changes is tagged with a header counting the
redactions, and counted in the metric `redactions_total{kind,direction}`.
"""

import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import context, metrics
from wit_world.imports.types import (
    HeaderChanges,
    PluginInfo,
    RequestAction_Continue,
    RequestChanges,
    ResponseChanges,
)

CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
DETECTORS = ("card", "email")
KNOWN = {"keys", "detect", "mask", "requests", "responses", "header"}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class Settings:
    """The route entry's config, checked once at init."""

    def __init__(self, text: str):
        try:
            config = json.loads(text or "{}") or {}
        except ValueError as e:
            raise Err(f"py-redact: config is not JSON: {e}")
        if not isinstance(config, dict):
            raise Err("py-redact: config must be an object")
        unknown = sorted(set(config) - KNOWN)
        if unknown:
            raise Err(f"py-redact: unknown field `{unknown[0]}`, expected one of {', '.join(sorted(KNOWN))}")
        keys = config.get("keys", ["password", "secret", "token"])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise Err("py-redact: `keys` must be a list of strings")
        self.keys = {k.lower() for k in keys}
        detect = config.get("detect", list(DETECTORS))
        if not isinstance(detect, list) or any(d not in DETECTORS for d in detect):
            raise Err(f"py-redact: `detect` must be a list of {', '.join(DETECTORS)}")
        self.detect = set(detect)
        self.mask = config.get("mask", "[redacted]")
        if not isinstance(self.mask, str):
            raise Err("py-redact: `mask` must be a string")
        self.requests = config.get("requests", True)
        self.responses = config.get("responses", False)
        if not isinstance(self.requests, bool) or not isinstance(self.responses, bool):
            raise Err("py-redact: `requests` and `responses` must be true or false")
        self.header = str(config.get("header", "x-redacted")).lower()


class Redactor:
    """One pass over a JSON document, counting what it masked by kind."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.counts: dict[str, int] = {}

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def card(self, match: re.Match) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        if not luhn_ok(digits):
            return match.group(0)
        self.count("card")
        return "**** " + digits[-4:]

    def email(self, match: re.Match) -> str:
        self.count("email")
        domain = match.group(0).split("@", 1)[1]
        return "***@" + domain

    def text(self, value: str) -> str:
        if "card" in self.settings.detect:
            value = CARD.sub(self.card, value)
        if "email" in self.settings.detect:
            value = EMAIL.sub(self.email, value)
        return value

    def value(self, value):
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key.lower() in self.settings.keys:
                    self.count("key")
                    out[key] = self.settings.mask
                else:
                    out[key] = self.value(item)
            return out
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def is_json(headers) -> bool:
    for name, value in headers:
        if name == "content-type":
            media = value.split(";", 1)[0].strip().lower()
            return media == "application/json" or media.endswith("+json")
    return False


settings: Settings | None = None


def redact(headers, body, direction: str):
    """The redacted body and its header edits, or (None, None) if unchanged."""
    if body is None or not is_json(headers):
        return None, None
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    redactor = Redactor(settings)
    cleaned = redactor.value(document)
    total = sum(redactor.counts.values())
    if total == 0:
        return None, None
    for kind, n in sorted(redactor.counts.items()):
        metrics.counter_add("redactions_total", n, [("kind", kind), ("direction", direction)])
    context.set(f"redact.{direction}", str(total))
    new_body = json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False).encode()
    return new_body, HeaderChanges(remove=[], set=[(settings.header, str(total))], append=[])


NO_HEADERS = HeaderChanges(remove=[], set=[], append=[])


class Handler(exports.Handler):
    def init(self, config: str) -> PluginInfo:
        global settings
        settings = Settings(config)
        return PluginInfo(
            wants_request_body=settings.requests,
            wants_response=settings.responses,
            wants_response_body=settings.responses,
        )

    def header_interest(self):
        return ["content-type"]

    def on_request(self, request):
        body, headers = (None, None)
        if settings.requests:
            body, headers = redact(request.headers, request.body, "request")
        return RequestAction_Continue(
            RequestChanges(headers=headers or NO_HEADERS, path=None, query=None, body=body)
        )

    def on_response(self, response):
        body, headers = redact(response.headers, response.body, "response")
        return ResponseChanges(status=None, headers=headers or NO_HEADERS, body=body)
