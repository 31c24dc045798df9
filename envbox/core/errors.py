"""The one user-facing error type, its few subclasses and the documented exit codes."""

from __future__ import annotations

# Exit codes (README "Exit codes"). The app's own code passes through; death by
# signal N gives 128+N.
EXIT_USAGE = 2
EXIT_ENVBOX = 125
EXIT_NOEXEC = 126
EXIT_NOTFOUND = 127


class EnvboxError(Exception):
    """An expected failure: one line for the user, an optional hint, an exit code."""

    exit_code = EXIT_ENVBOX

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def render(self) -> str:
        """Two lines at most; paths, member names and helpers' output in them are escaped
        (names.printable), so a message can never carry an escape sequence to the terminal."""
        from envbox.core.names import printable

        text = f"envbox: {printable(self.message)}"
        if self.hint:
            text += f"\nhint: {printable(self.hint)}"
        return text


class ProfileError(EnvboxError):
    """A profile (or project file) is missing, malformed or invalid."""


class CatalogError(EnvboxError):
    """The catalog is malformed, or no release matches a constraint."""


class BuildError(EnvboxError):
    """A source could not be turned into a layer."""


class SandboxError(EnvboxError):
    """The namespace or mounts could not be set up."""


class LimitError(EnvboxError):
    """A resource limit cannot be enforced."""


class TrustError(EnvboxError):
    """A project file is not trusted (or cannot be)."""
