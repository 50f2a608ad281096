"""What went wrong talking to the API server, in the few classes the controllers act on.

- :class:`NotFound` (404) and :class:`Conflict` (409) make reads optional and creates
  idempotent.
- :class:`Forbidden` (403): the operator's RBAC lacks a rule; the object says so.
- :class:`Unavailable`: nothing usable came back (connection refused or reset, a timeout, 429,
  5xx): transient, retried with a short back-off and logged as one line.
- :class:`KubeError` itself: any other refusal (422 invalid, 400), a bug or a bad object.
"""

from __future__ import annotations


class KubeError(Exception):
    """An API call that failed; `sentence` is the API server's own message when it sent one."""

    def __init__(self, status: int, sentence: str, *, verb: str = "", what: str = "") -> None:
        where = f"{verb} {what}: ".lstrip() if verb or what else ""
        super().__init__(f"{where}{status} {sentence}".strip())
        self.status = status
        self.sentence = sentence[:1000]
        self.verb = verb
        self.what = what


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class Conflict(KubeError):
    """409: the name is taken, or a write raced another."""


class Forbidden(KubeError):
    """403: RBAC does not allow the call."""


class Unavailable(KubeError):
    """No answer, or the server could not answer now (429, 5xx): try again shortly."""


def classify(status: int, sentence: str, *, verb: str = "", what: str = "") -> KubeError:
    """The error for an HTTP status (0: no response at all)."""
    kind: type[KubeError] = {404: NotFound, 409: Conflict, 403: Forbidden}.get(status, KubeError)
    if status == 0 or status == 429 or status >= 500:
        kind = Unavailable
    return kind(status, sentence, verb=verb, what=what)
