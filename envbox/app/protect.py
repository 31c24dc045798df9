"""What is read-only inside every launch: envbox's own state and the launcher entries it wrote."""

from __future__ import annotations

import os


def protected_dirs(paths, *, create: bool = True) -> list:
    """envbox's own state, read-only inside every launch: the app cannot change its policy
    (profiles, trust records, store, cached plans) behind the user's back."""
    for d in (paths.config_dir, paths.data_dir, paths.state_dir, paths.cache_dir):
        if create:
            os.makedirs(d, exist_ok=True)  # a directory created later by the app would not be protected
    dirs = (paths.config_dir, paths.data_dir, paths.state_dir, paths.cache_dir, paths.system_dir)
    # Real paths: a dotfiles-style symlink (~/.config/envbox -> ~/dotfiles/envbox) is protected
    # at its target (a bind mount over the link itself would not hold).
    return [os.path.realpath(d) for d in dirs] + desktop_entries(os.environ)


def desktop_entries(environ) -> list:
    """The launcher entries envbox wrote for this user: read-only too (an app could otherwise
    point the menu entry of another app at something else)."""
    from envbox.desktop.files import find_installed, user_place

    return [str(item.path) for item in find_installed(user_place(environ))]
