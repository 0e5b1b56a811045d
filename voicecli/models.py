"""`voicecli models`: the models a profile's server offers (`GET {base_url}/models`).

Each listing is cached per base URL for a day (`<cache dir>/models/`), so shell completion of
`-m` and chat's `/model` can offer the names without a network call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from voicecli import paths
from voicecli.errors import ExitCode, VoicecliError
from voicecli.profiles import Profile

CACHE_TTL = 24 * 3600  # seconds a cached listing is offered for completion


def _key(profile_or_url: Profile | str) -> str:
    """The cache key: the base URL as configured ("sim" for the simulator, whatever port it gets)."""
    url = profile_or_url if isinstance(profile_or_url, str) else profile_or_url.connection.base_url
    return url.rstrip("/")


def cache_path(base_url: str) -> Path:
    digest = hashlib.sha256(_key(base_url).encode()).hexdigest()[:16]
    return paths.cache_dir() / "models" / f"{digest}.json"


def read_cache(base_url: str, now: float | None = None) -> list[str] | None:
    """The model ids cached for `base_url` if fetched within a day, else None. Never raises."""
    try:
        data = json.loads(cache_path(base_url).read_text(encoding="utf-8"))
        fresh = (now if now is not None else time.time()) - float(data["fetched"]) < CACHE_TTL
        if fresh and data.get("base_url_sha256") == hashlib.sha256(_key(base_url).encode()).hexdigest():
            return [str(m) for m in data["ids"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_cache(base_url: str, ids: list[str]) -> None:
    data = {"base_url_sha256": hashlib.sha256(_key(base_url).encode()).hexdigest(),  # not the URL: it may hold a password
            "fetched": time.time(), "ids": ids}
    try:
        paths.write_private(cache_path(base_url), json.dumps(data))
    except OSError:
        pass  # a cache that cannot be written is not worth failing the listing for


async def fetch(profile: Profile) -> list[dict]:
    """The server's model objects, sorted by id; a VoicecliError (with the API's exit code) on failure."""
    from voicecli.transport import close_clients, resolve_base_url
    from voicecli.transport.base import Retries
    from voicecli.transport.http import get_json
    from voicecli.ui.status import describe_error, error_hint
    from voicecli.errors import exit_code_for

    base_url = resolve_base_url(profile)
    api_key = profile.api_key()
    retries = Retries(profile.connection.max_retries, api_key)
    try:
        data, error = await get_json(profile.connection, base_url, api_key, "/models", retries)
    finally:
        await close_clients()
    if error is None:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in items):
            from voicecli.events import Error

            error = Error("protocol", "the reply is not a model list ({\"data\": [{\"id\": …}, …]})")
        else:
            return sorted(items, key=lambda m: m["id"])
    raise VoicecliError(describe_error(error, base_url, retries.used), hint=error_hint(error, base_url, profile),
                        exit_code=exit_code_for(error))


def list_models(profile: Profile, json_out: bool, debug: bool = False) -> int:
    from voicecli.ui.status import setup_logging

    setup_logging(debug)  # retries are announced on a terminal, as in infer
    models = asyncio.run(fetch(profile))
    write_cache(_key(profile), [m["id"] for m in models])
    if json_out:
        from voicecli.ui.listing import print_json

        print_json(models)
    elif sys.stdout.isatty():
        _table(models, profile.model.name)
    else:
        sys.stdout.write("".join(m["id"] + "\n" for m in models))
    return ExitCode.OK


def _table(models: list[dict], current: str) -> None:
    rows = [("MODEL", "CREATED", "OWNED BY")]
    for m in models:
        created = m.get("created")
        day = datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%d") if isinstance(created, int) else ""
        mark = " *" if m["id"] == current else ""
        rows.append((m["id"] + mark, day, str(m.get("owned_by") or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())
    if not models:
        print("(the server lists no models)", file=sys.stderr)
    elif any(m["id"] == current for m in models):
        print(f"* the profile's model ({current})", file=sys.stderr)
