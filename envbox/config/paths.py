"""Where envbox keeps things: a frozen Paths value from platformdirs and ENVBOX_* overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

SYSTEM_DIR_DEFAULT = "/etc/envbox"


@dataclass(frozen=True)
class Paths:
    """All of envbox's directories. Build one with `Paths.from_env()`; never a global."""

    bundled_profiles: Path  # profiles shipped with the package
    system_dir: Path  # $ENVBOX_SYSTEM_DIR, default /etc/envbox
    config_dir: Path  # $XDG_CONFIG_HOME/envbox
    data_dir: Path  # $XDG_DATA_HOME/envbox
    cache_dir: Path  # $XDG_CACHE_HOME/envbox
    state_dir: Path  # $XDG_STATE_HOME/envbox
    runtime_dir: Path  # $XDG_RUNTIME_DIR/envbox or a private dir under /tmp

    @property
    def system_profiles(self) -> Path:
        return self.system_dir / "profiles"

    @property
    def user_profiles(self) -> Path:
        return self.config_dir / "profiles"

    @property
    def user_catalogs(self) -> Path:
        return self.config_dir / "catalog.d"

    @property
    def system_catalogs(self) -> Path:
        return self.system_dir / "catalog.d"

    @property
    def store(self) -> Path:
        return self.data_dir / "store"

    @property
    def prefixes(self) -> Path:
        """Writable per-profile prefixes (npm's global prefix). Beside the data dir, not in it:
        the data dir is read-only inside every launch, and these must be writable there."""
        return self.data_dir.with_name(self.data_dir.name + "-prefixes")

    @property
    def downloads(self) -> Path:
        return self.cache_dir / "downloads"

    @property
    def trust_dir(self) -> Path:
        return self.state_dir / "trust"

    @property
    def plan_cache(self) -> Path:
        return self.cache_dir / "plans"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Paths":
        env = os.environ if environ is None else environ
        import platformdirs  # lazy: the fast launch path never needs it

        def pick(var: str, default: str) -> Path:
            value = env.get(var)
            return Path(value) if value else Path(default)

        here = Path(__file__).resolve().parent.parent  # the envbox package
        bundled = here / "profiles"
        if not bundled.is_dir():  # running from a source checkout
            bundled = here.parent / "profiles"
        uid = os.getuid()
        runtime = env.get("XDG_RUNTIME_DIR")
        runtime_dir = Path(runtime) / "envbox" if runtime else Path(f"/tmp/envbox-{uid}")
        return cls(
            bundled_profiles=bundled,
            system_dir=pick("ENVBOX_SYSTEM_DIR", SYSTEM_DIR_DEFAULT),
            config_dir=pick("ENVBOX_CONFIG_DIR", platformdirs.user_config_dir("envbox", appauthor=False)),
            data_dir=pick("ENVBOX_DATA_DIR", platformdirs.user_data_dir("envbox", appauthor=False)),
            cache_dir=pick("ENVBOX_CACHE_DIR", platformdirs.user_cache_dir("envbox", appauthor=False)),
            state_dir=pick("ENVBOX_STATE_DIR", platformdirs.user_state_dir("envbox", appauthor=False)),
            runtime_dir=pick("ENVBOX_RUNTIME_DIR", str(runtime_dir)),
        )
