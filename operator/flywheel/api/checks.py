"""Rules the API server and the operator both apply: each is one CEL rule and one Python test
with the same message.

The CRDs carry the CEL (`x-kubernetes-validations`), so `kubectl apply` refuses a bad value with
the message; the pydantic models carry the Python test, so the operator refuses the same value
when it parses a spec (`Stalled`, reason `InvalidSpec`) instead of failing later on it. Where
the API server cannot know as much as the operator (a cron schedule that never fires, a spec too
large for a Job's command line) only the Python side refuses, with its own message.

Used by :mod:`flywheel.api.common` and the kind modules; imports nothing of the operator.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from croniter import croniter
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

CelRule = dict[str, str]


@dataclass(frozen=True)
class Check:
    """One rule: CEL on the field in the CRD, and `test` when the operator parses it. `test`
    must accept exactly what `rule` accepts (tests/unit/test_api_checks.py runs both on the
    same values). Without `rule` only the operator checks (what the API server cannot know)."""

    rule: str | None
    message: str
    test: Callable[[Any], bool] = field(compare=False)

    def cel(self) -> CelRule | None:
        """The `x-kubernetes-validations` entry, if the API server checks it too."""
        return None if self.rule is None else {"rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class Rules:
    """Annotated metadata: checks applied in order, the first that fails is the error."""

    checks: tuple[Check, ...]

    def __init__(self, *checks: Check | Rules) -> None:
        flat: list[Check] = []
        for item in checks:
            flat += item.checks if isinstance(item, Rules) else [item]
        object.__setattr__(self, "checks", tuple(flat))

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        found = handler(schema)
        target = handler.resolve_ref_schema(found)
        rules = [c.cel() for c in self.checks]
        # A new list: the existing one may belong to another annotation's json_schema_extra.
        existing = target.get("x-kubernetes-validations", [])
        target["x-kubernetes-validations"] = [*existing, *(r for r in rules if r)]
        return found

    def _validate(self, value: Any) -> Any:
        for check in self.checks:
            if not check.test(value):
                raise ValueError(check.message)
        return value


@dataclass(frozen=True)
class SchemaExtra:
    """Annotated metadata: keys added to the field's JSON schema (and so to the CRD) only."""

    items: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        found = handler(schema)
        handler.resolve_ref_schema(found).update(dict(self.items))
        return found


@functools.cache
def re2(pattern: str) -> re.Pattern[str]:
    """A pattern compiled to match as RE2 (CEL's `matches`, the API server's `pattern`) does.
    The patterns used here need no look-around or back-references; the one difference left is
    `$`, which in Python also matches before a final newline."""
    return re.compile(pattern.replace("$", r"\Z"))


def matches(pattern: str) -> Callable[[str], bool]:
    """A Python test for CEL's `self.matches(pattern)`."""
    return lambda value: re2(pattern).search(value) is not None


def implies(condition: str, pattern: str) -> Callable[[str], bool]:
    """A Python test for CEL's `!self.matches(condition) || self.matches(pattern)`."""
    return lambda value: re2(condition).search(value) is None or matches(pattern)(value)


def cel_quote(pattern: str) -> str:
    """A pattern inside a single-quoted CEL string: backslashes and quotes escaped."""
    return pattern.replace("\\", "\\\\").replace("'", "\\'")


# --- object names ---------------------------------------------------------------------------

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1123 label: lower-case letters, digits and `-`, starting and ending alphanumeric."""
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1035 label (what Service names are): a DNS-1123 label that starts with a letter."""
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


@dataclass(frozen=True)
class NameRule:
    """What `metadata.name` of a kind must be so that the names and label values the operator
    derives from it fit Kubernetes' limits. A root-level CEL rule in the CRD (rules at the root
    may read `metadata.name`)."""

    max_length: int
    pattern: str
    why: str
    """The reason, for the message: which child name or label sets the limit."""

    @property
    def shape(self) -> str:
        """The name's shape in words."""
        if self.pattern == DNS_1035_LABEL:
            return "a DNS-1035 label (lower-case letters, digits and '-', starting with a letter)"
        return "a DNS-1123 label (lower-case letters, digits and '-')"

    @property
    def message(self) -> str:
        """What users read when the API server refuses a name."""
        limit = f"of at most {self.max_length} characters"
        return f"metadata.name must be {self.shape} {limit}: {self.why}"

    def cel(self) -> CelRule:
        """The root-level `x-kubernetes-validations` entry."""
        return {
            "rule": f"size(self.metadata.name) <= {self.max_length} && "
            f"self.metadata.name.matches('{cel_quote(self.pattern)}')",
            "message": self.message,
        }

    def test(self, name: str) -> bool:
        """Whether a name is allowed (what the CEL rule says)."""
        return len(name) <= self.max_length and re2(self.pattern).search(name) is not None


# --- label keys -----------------------------------------------------------------------------

QUALIFIED_NAME = rf"^({DNS_SUBDOMAIN}/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
"""A Kubernetes qualified name (label keys, condition types): an optional DNS-1123 subdomain
prefix and `/`, then a name of letters, digits, `-`, `_` and `.` that starts and ends with a
letter or digit."""
_QUALIFIED_NAME_LENGTHS = r"^([^/]{1,253}/)?[^/]{1,63}$"

LABEL_KEY = Rules(
    Check(
        f"self.matches('{cel_quote(QUALIFIED_NAME)}') && "
        f"self.matches('{cel_quote(_QUALIFIED_NAME_LENGTHS)}')",
        "must be a label key such as kubernetes.io/hostname or topology.kubernetes.io/zone: an "
        "optional prefix (a lower-case DNS subdomain of at most 253 characters) and '/', then a "
        "name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter "
        "or digit",
        lambda value: matches(QUALIFIED_NAME)(value) and matches(_QUALIFIED_NAME_LENGTHS)(value),
    )
)
"""A label key as Kubernetes validates one (`IsQualifiedName`), lengths included."""


# --- cron schedules -------------------------------------------------------------------------

CRON_MACROS = ("yearly", "annually", "monthly", "weekly", "daily", "hourly")
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
# (name, values, steps): a value is one of `values`, a step one of `steps`.
_CRON_FIELDS = (
    ("minute", "0-59", r"[0-5]?[0-9]", r"[1-9]|[1-5][0-9]"),
    ("hour", "0-23", r"[01]?[0-9]|2[0-3]", r"[1-9]|1[0-9]|2[0-3]"),
    ("day of month", "1-31", r"0?[1-9]|[12][0-9]|3[01]", r"[1-9]|[12][0-9]|3[01]"),
    ("month", "1-12 or jan-dec", rf"0?[1-9]|1[0-2]|(?i:{_MONTHS})", r"[1-9]|1[0-2]"),
    ("day of week", "0-7 or sun-sat", rf"[0-7]|(?i:{_DAYS})", r"[1-7]"),
)
CRON_PATTERN = rf"^(@({'|'.join(CRON_MACROS)})|(\S+\s+){{4}}\S+)$"
"""The shape (the schema's `pattern`): five fields separated by white space, or a macro."""
_FIVE_FIELDS = r"^\S+(\s+\S+){4}$"


def _cron_field_pattern(index: int, values: str, steps: str) -> str:
    item = rf"(\*|({values})(-({values}))?)(/({steps}))?"
    before = r"(\S+\s+)" + f"{{{index}}}" if index else ""
    after = r"(\s+\S+)" + f"{{{4 - index}}}" if index < 4 else ""
    return f"^{before}{item}(,{item})*{after}$"


def _cron_checks() -> Rules:
    """Each field's range, for schedules of the right shape (the pattern refuses the rest)."""
    checks = []
    for index, (name, span, values, steps) in enumerate(_CRON_FIELDS):
        pattern = _cron_field_pattern(index, values, steps)
        checks.append(
            Check(
                f"!self.matches('{cel_quote(_FIVE_FIELDS)}') || "
                f"self.matches('{cel_quote(pattern)}')",
                f"the {name} field must be {span}: a value, `*`, a range `a-b`, a step `*/n` or "
                "`a-b/n`, or a comma-separated list of them",
                implies(_FIVE_FIELDS, pattern),
            )
        )
    return Rules(*checks)


def cron_fires(schedule: str) -> bool:
    """Whether croniter (what the operator schedules with) takes the schedule and finds a next
    time for it; a day that never comes (`0 0 31 2 *`) has none."""
    try:
        if not croniter.is_valid(schedule):
            return False
        croniter(schedule, datetime(2024, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (ValueError, KeyError, OverflowError, ArithmeticError):
        return False
    return True


CRON_SCHEDULE = Rules(
    _cron_checks(),
    Check(None, "never fires (e.g. on a 31st of February), so it cannot be followed", cron_fires),
)
"""The rules of a cron schedule besides its shape (`CRON_PATTERN`): each field's range for
both, and for the operator also croniter's verdict (what it schedules with) and a next time."""


# --- quantities -----------------------------------------------------------------------------

_QUANTITY = re2(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_INT32 = 2**31 - 1


def parse_quantity(value: str | int) -> Decimal | None:
    """A Kubernetes resource quantity (`500m`, `1Gi`, `2`, `1e3`), as apimachinery's
    `ParseQuantity` reads it, or None when it is not one."""
    if isinstance(value, bool):
        return None
    found = _QUANTITY.match(str(value))
    if found is None:
        return None
    number, suffix = found.group(1), found.group(2) or ""
    try:
        amount = Decimal(number)
        if suffix in _BINARY:
            return amount * _BINARY[suffix]
        if suffix in _DECIMAL:
            return amount.scaleb(_DECIMAL[suffix])
        exponent = int(suffix[1:])
        if abs(exponent) > _INT32:
            return None
        return amount.scaleb(exponent)
    except (InvalidOperation, ValueError):
        return None


def is_quantity(value: Any) -> bool:
    """CEL's `isQuantity(string(self))`."""
    return isinstance(value, str | int) and parse_quantity(value) is not None


# --- durations ------------------------------------------------------------------------------

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def duration_seconds(text: str) -> Decimal | None:
    """A duration such as `90s` or `1h30m` in seconds (exact), or None if it is not one."""
    if re.fullmatch(DURATION_PATTERN, text) is None:
        return None
    return sum(
        (Decimal(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(text)),
        Decimal(0),
    )


def duration_between(minimum: str, maximum: str, what: str = "must be") -> Rules:
    """A duration field bounded on both sides (the upper bound also keeps it inside what Go's
    and Python's durations can hold)."""
    low, high = duration_seconds(minimum), duration_seconds(maximum)
    assert low is not None
    assert high is not None

    def test(value: str) -> bool:
        seconds = duration_seconds(value)
        return seconds is not None and low <= seconds <= high

    return Rules(
        Check(
            f"duration(self) >= duration('{minimum}') && duration(self) <= duration('{maximum}')",
            f"{what} between {minimum} and {maximum}",
            test,
        )
    )


# --- URIs -----------------------------------------------------------------------------------

_HOST = (
    r"([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])"
)
_PORT = r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
HTTP_URI = rf"^https?://{_HOST}{_PORT}([/?#][!-~]*)?$"
"""An http(s) URL with a host, an optional port, no `user:password@`, printable ASCII only."""
HTTP_URI_WITH_USER = rf"^https?://([!-~]+@)?{_HOST}{_PORT}([/?#][!-~]*)?$"
PVC_URI = rf"^pvc://{DNS_SUBDOMAIN}/.+$"
PVC_CLAIM_LENGTH = r"^pvc://[a-z0-9][-a-z0-9.]{0,252}/"
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
DOT_SEGMENT = r"^(pvc|file)://.*/\.\.?(/|$)"


def uri_checks(schemes: tuple[str, ...], *, user_info: bool = False) -> Rules:
    """The rules of a URI field whose value must use one of `schemes`, each rule about one
    scheme's shape (the allow-list of schemes itself is the caller's, with its own message)."""
    checks = [
        Check(
            f"!self.matches('{cel_quote(CONTROL_CHARACTERS)}')",
            "must not contain control characters",
            lambda value: re2(CONTROL_CHARACTERS).search(value) is None,
        )
    ]
    if "http" in schemes or "https" in schemes:
        http = HTTP_URI_WITH_USER if user_info else HTTP_URI
        checks.append(
            Check(
                f"!self.matches('^https?://') || self.matches('{cel_quote(http)}')",
                "an http(s) URI is http(s)://<host>[:<port>][/<path>]"
                + (" (optionally with user:password@)" if user_info else " (no user:password@)")
                + " in printable ASCII: percent-encode spaces and other characters",
                implies("^https?://", http),
            )
        )
    if "pvc" in schemes:
        checks.append(
            Check(
                f"!self.startsWith('pvc://') || (self.matches('{cel_quote(PVC_CLAIM_LENGTH)}') "
                f"&& self.matches('{cel_quote(PVC_URI)}'))",
                "a pvc:// URI is pvc://<claim>/<path>, the claim a PersistentVolumeClaim name "
                "(a DNS-1123 subdomain of at most 253 characters)",
                lambda value: (
                    not value.startswith("pvc://")
                    or (
                        re2(PVC_CLAIM_LENGTH).search(value) is not None
                        and re2(PVC_URI).search(value) is not None
                    )
                ),
            )
        )
    if "pvc" in schemes or "file" in schemes:
        checks.append(
            Check(
                f"!self.matches('{cel_quote(DOT_SEGMENT)}')",
                "a pvc:// or file:// path must not contain `.` or `..` segments",
                lambda value: re2(DOT_SEGMENT).search(value) is None,
            )
        )
    return Rules(*checks)
