"""Web sessions: a person signs in with an API token; the browser then holds only a session id.

The server keeps, per session, the SHA-256 of its id (never the id), the SHA-256 of the API
token it was opened with (the token itself is never kept), and a CSRF token. Every request
checks the API token again through the same lookup the API uses (expired or revoked: the
session ends). Sign-out removes the session: its cookie is worthless from then on. Sessions
live in the server's memory: a restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "aicd_session"
SIGNIN_COOKIE = "aicd_signin"  # double-submit CSRF token of the sign-in form (no session yet)
IDLE_S = 8 * 3600.0  # a session unused this long ends
MAX_AGE_S = 7 * 24 * 3600.0  # and any session ends after this long
MAX_SESSIONS = 10_000


@dataclass
class WebSession:
    user_id: int
    token_hash: str  # SHA-256 of the API token it was opened with
    csrf: str
    created: float
    last_seen: float


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Open sessions by the hash of their id (thread-safe: pages run in the thread pool too)."""

    def __init__(self, *, idle_s: float = IDLE_S, max_age_s: float = MAX_AGE_S) -> None:
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()
        self.idle_s = idle_s
        self.max_age_s = max_age_s

    def open(self, user_id: int, token_hash: str) -> tuple[str, WebSession]:
        """A new session: its id (for the cookie, kept nowhere else) and the session."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        session = WebSession(user_id, token_hash, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            if len(self._sessions) >= MAX_SESSIONS:  # the oldest goes first
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
                del self._sessions[oldest]
            self._sessions[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> WebSession | None:
        if not session_id:
            return None
        now = time.time()
        with self._lock:
            key = _digest(session_id)
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s or now - session.created > self.max_age_s:
                del self._sessions[key]
                return None
            session.last_seen = now
            return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(_digest(session_id), None)

    def _expire(self, now: float) -> None:
        stale = [
            key
            for key, s in self._sessions.items()
            if now - s.last_seen > self.idle_s or now - s.created > self.max_age_s
        ]
        for key in stale:
            del self._sessions[key]


def same_token(expected: str, given: str | None) -> bool:
    """A constant-time comparison of CSRF tokens (an empty one never matches)."""
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
