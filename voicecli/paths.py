"""Where user state lives. `VOICECLI_HOME` relocates all of it (profiles, history, logs, cache).

User state is private: every folder voicecli creates is 0700 and every file it writes there
(conversation logs, transcripts, profiles, input history, recordings) is 0600, whatever the
umask — they hold prompts, answers and sometimes header values. Write them through
`private_dir`, `open_private` and `write_private` below, never with a bare open/mkdir.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

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


def cache_dir() -> Path:
    """Things voicecli can fetch again (the model lists of `voicecli models`)."""
    home = _home()
    if home is not None:
        return home / "cache"
    from platformdirs import user_cache_path

    return user_cache_path(APP)


def user_profiles_dir() -> Path:
    return config_dir() / "profiles"


def builtin_profiles_dir() -> Path:
    """Profiles ship inside the wheel as voicecli/profiles; in a source checkout they are ../profiles."""
    here = Path(__file__).resolve().parent
    packaged = here / "profiles"
    return packaged if packaged.is_dir() else here.parent / "profiles"


def private_dir(path: Path) -> Path:
    """`mkdir -p path`, each folder it creates 0700. Existing folders of voicecli's own (the
    platform's voicecli folders, and those under them or under VOICECLI_HOME) are tightened to
    0700 too: that also hides files an older version wrote world-readable. Other existing
    folders (the user's own, or VOICECLI_HOME itself) are left alone."""
    missing, folder = [], path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another voicecli made it a moment ago
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    for folder in (path, *path.parents):
        if folder in missing or not _ours(folder):
            continue
        try:
            if stat.S_IMODE(folder.stat().st_mode) & 0o077:
                os.chmod(folder, 0o700)
        except OSError:
            pass  # not ours to change after all
    return path


def _ours(folder: Path) -> bool:
    home = _home()
    if home is not None:
        return home in folder.parents  # inside VOICECLI_HOME, not the folder the user chose
    roots = {config_dir(), data_dir(), cache_dir()}
    return any(folder == root or root in folder.parents for root in roots)


def open_private(path: Path, mode: str = "a") -> IO[Any]:
    """Open a user-state file for writing ("a", "w", "ab", "wb"), created 0600 — and an existing
    regular file of ours tightened to 0600 — so no other user can read it."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # never chmod a tty or /dev/null
            os.fchmod(fd, 0o600)
    except OSError:
        pass  # not ours to change (someone else's file we may write to): leave it
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def write_private(path: Path, text: str) -> None:
    with open_private(path, "w") as f:
        f.write(text)
