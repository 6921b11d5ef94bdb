"""Who may do what: reader and admin credentials, from the environment or a file, never argv.

    >>> creds = load_credentials(Settings.load())       # RAG_AUTH_FILE, RAG_*_PASSWORD, RAG_AUTH
    >>> creds.role("alice", "s3cret")                  # -> "admin" | "reader" | None

Roles: a **reader** asks questions (UI, ``/ask``, any API); an **admin** also uploads and removes
documents. Sources, all merged (a user name given twice is an error):

* ``auth_file`` (``RAG_AUTH_FILE``): one ``<role> <user> <password>`` per line, ``#`` comments;
  refused when other users may read it (``chmod 600``);
* ``RAG_READER_PASSWORD`` (user ``RAG_READER_USER``, default ``reader``) and
  ``RAG_ADMIN_PASSWORD`` (user ``RAG_ADMIN_USER``, default ``admin``);
* ``auth`` (``RAG_AUTH`` or ``rag.toml``) ``user:password``: one admin, as before.

A reader's password may not equal an admin's. Passwords are kept only as SHA-256 digests and
compared in constant time; nothing here logs or prints them. Other modules (the HTTP API) call
``role(user, password)`` or ``role_for_token(token)`` (a bearer token is a password).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError

ROLES = ("reader", "admin")


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8")).digest()


@dataclass(frozen=True)
class Credentials:
    """User -> (password digest, role). Empty means authentication is off."""

    users: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def role(self, user: str, password: str) -> str | None:
        """The role of a right user/password pair, else None."""
        entry = self.users.get(user or "")
        if entry is None:
            hmac.compare_digest(_digest(password or ""), _digest("-"))  # same time for unknown users
            return None
        return entry[1] if hmac.compare_digest(entry[0], _digest(password or "")) else None

    def role_for_token(self, token: str) -> str | None:
        """The role whose password is ``token`` (bearer tokens for the HTTP API), else None."""
        token_digest = _digest(token or "")
        matches = {role for digest, role in self.users.values() if hmac.compare_digest(digest, token_digest)}
        return "admin" if "admin" in matches else next(iter(matches), None)

    def role_of_user(self, user: str | None) -> str | None:
        """The role of an already authenticated user (e.g. Gradio's ``request.username``)."""
        entry = self.users.get(user or "")
        return entry[1] if entry else None

    def is_admin(self, user: str | None) -> bool:
        """True when authentication is off (loopback only) or ``user`` is an admin."""
        return not self.enabled or self.role_of_user(user) == "admin"

    def gradio_check(self, user: str, password: str) -> bool:
        return self.role(user, password) is not None


def _from_file(path: Path) -> list[tuple[str, str, str, str]]:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"auth_file {path}: cannot read it ({exc.strerror or exc})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"auth_file {path} can be read by other users (mode {stat.filemode(mode)}); "
                          f"run `chmod 600 {path}`")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or parts[0] not in ROLES:
            raise ConfigError(f"auth_file {path} line {n}: expected '<reader|admin> <user> <password>'")
        out.append((parts[0], parts[1], parts[2], f"{path} line {n}"))
    return out


def load_credentials(settings, environ: Mapping[str, str] | None = None) -> Credentials:
    """Every credential the settings and the environment define (see the module docstring)."""
    env = os.environ if environ is None else environ
    entries: list[tuple[str, str, str, str]] = []
    if str(getattr(settings, "auth_file", "") or "") not in ("", "."):
        entries += _from_file(Path(settings.auth_file))
    for role in ROLES:
        password = env.get(f"RAG_{role.upper()}_PASSWORD", "")
        if password:
            entries.append((role, env.get(f"RAG_{role.upper()}_USER", role), password, f"RAG_{role.upper()}_PASSWORD"))
    if settings.auth:
        user, _, password = settings.auth.partition(":")
        if not (user and password):
            raise ConfigError("auth must look like user:password")
        entries.append(("admin", user, password, "auth (RAG_AUTH)"))
    users: dict[str, tuple[bytes, str]] = {}
    for role, user, password, where in entries:
        if user in users:
            raise ConfigError(f"user '{user}' is defined twice (again in {where}); give each user one line")
        users[user] = (_digest(password), role)
    readers = {d for d, r in users.values() if r == "reader"}
    if any(d in readers for d, r in users.values() if r == "admin"):
        raise ConfigError("a reader's password equals an admin's: give admins their own password")
    return Credentials(users)
