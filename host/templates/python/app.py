"""`{{name}}`: a wasmgate plugin in Python. It greets every request with a
header (and tells later plugins through the context), and answers paths
under `blocked_prefix` with 403 JSON.

The contract is wit/plugin.wit (wasmgate:plugin@{{contract}}); componentize-py
generates the `wit_world` package from it at build time.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import context, log
from wit_world.imports.types import (
    HeaderChanges,
    LogLevel,
    PluginInfo,
    RequestAction_Continue,
    RequestAction_Respond,
    RequestChanges,
    Response,
    ResponseChanges,
)

KNOWN = {"greeting", "blocked_prefix"}
NO_HEADERS = HeaderChanges(remove=[], set=[], append=[])

settings: dict = {}


class Handler(exports.Handler):
    def init(self, config: str) -> PluginInfo:
        """Runs once per instance; raising Err refuses the config at load time."""
        try:
            parsed = json.loads(config or "{}") or {}
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        unknown = sorted(set(parsed) - KNOWN)
        if unknown:
            raise Err(f"unknown field `{unknown[0]}`, expected one of {', '.join(sorted(KNOWN))}")
        if not isinstance(parsed.get("greeting"), str) or parsed["greeting"] == "":
            raise Err("`greeting` must not be empty")
        settings.update(parsed)
        return PluginInfo(wants_request_body=False, wants_response=False, wants_response_body=False)

    def header_interest(self):
        """It reads no request header, so the host copies none into the call."""
        return []

    def on_request(self, request):
        prefix = settings.get("blocked_prefix")
        if prefix is not None and request.path.startswith(prefix):
            log.log(LogLevel.INFO, "blocked", [("path", request.path)])
            body = json.dumps({"error": "blocked", "code": "forbidden"}).encode()
            return RequestAction_Respond(
                Response(status=403, headers=[("content-type", "application/json")], body=body)
            )
        context.set("greeting", settings["greeting"])
        return RequestAction_Continue(
            RequestChanges(
                headers=HeaderChanges(remove=[], set=[("x-greeting", settings["greeting"])], append=[]),
                path=None,
                query=None,
                body=None,
            )
        )

    def on_response(self, response):
        return ResponseChanges(status=None, headers=NO_HEADERS, body=None)
