"""Where user state lives. `VOICECLI_HOME` relocates all of it (profiles, history, logs)."""

from __future__ import annotations

import os
from pathlib import Path

APP = "voicecli"


def _home() -> Path | None:
    value = os.environ.get("VOICECLI_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    if home is not None:
        return home
    from platformdirs import user_config_path

    return user_config_path(APP)


def data_dir() -> Path:
    home = _home()
    if home is not None:
        return home
    from platformdirs import user_data_path

    return user_data_path(APP)


def user_profiles_dir() -> Path:
    return config_dir() / "profiles"


def builtin_profiles_dir() -> Path:
    """Profiles ship inside the wheel as voicecli/profiles; in a source checkout they are ../profiles."""
    here = Path(__file__).resolve().parent
    packaged = here / "profiles"
    return packaged if packaged.is_dir() else here.parent / "profiles"
