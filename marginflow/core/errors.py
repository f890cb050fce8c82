"""One exception hierarchy, rooted in :class:`MarginflowError`.

Errors are part of the interface: the message texts live here and tests pin them.
"""

from __future__ import annotations

from dataclasses import dataclass


class MarginflowError(Exception):
    """Root of every error marginflow raises on purpose."""


class ValidationError(MarginflowError, ValueError):
    """A value failed validation; ``field`` names it and ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class NoSolutionError(MarginflowError, ValueError):
    """A solver has no answer (for example an implied volatility outside the bounds)."""


class ConfigurationError(MarginflowError):
    """A model, version or setting that does not exist or does not fit."""


class AuthenticationError(MarginflowError):
    """A credential (token, API key) was refused; ``reason`` is one of the ``MSG_AUTH_*`` texts.

    The reason is for logs and tests; a response to a client should say no more than
    "not authenticated", so an attacker learns nothing from the difference.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DecryptionError(MarginflowError):
    """An encrypted blob could not be opened; ``reason`` is one line and names the key id.

    ``kid`` is the data key the blob names, or ``None`` when the blob is too damaged to say.
    """

    def __init__(self, reason: str, *, kid: str | None = None) -> None:
        self.reason = reason
        self.kid = kid
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class RowFailure:
    """One rejected input row: where it was, which field, and why.

    ``line`` is 1-based and counts the header line, so it is the line a user sees in an
    editor. ``raw`` keeps the input as it was, so nothing rejected is lost.
    """

    source: str
    line: int
    field: str
    reason: str
    raw: str = ""

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.reason}"


# Message texts shared by loaders and validators. Tests match on these.
MSG_MISSING = "is missing"
MSG_NOT_NUMBER = "is not a number: {value!r}"
MSG_NOT_FINITE = "must be finite, got {value!r}"
MSG_NOT_POSITIVE = "must be > 0, got {value!r}"
MSG_NEGATIVE = "must be >= 0, got {value!r}"
MSG_NOT_ONE_OF = "must be one of {choices}, got {value!r}"
MSG_OUT_OF_BOUNDS = "must be within {interval} ({what}), got {value!r}"
MSG_NOT_WHOLE = "must be a whole number of {unit}, got {value!r}"

# Why an input file was refused before any row was read (marginflow.io.source).
MSG_FILE_MISSING = "no such file"
MSG_FILE_DIRECTORY = "is a directory, expected a file"
MSG_FILE_NOT_REGULAR = "is not a regular file (a device, pipe or socket cannot be read as input)"
MSG_FILE_TOO_LARGE = "is {size:,} bytes, more than the limit of {limit:,}"
MSG_FILE_UNREADABLE = "cannot be read: {reason}"
MSG_FILE_NOT_UTF8 = "line {line}: byte {byte} ({value!r}) is not UTF-8 text"
MSG_FILE_DUPLICATE_COLUMN = "the column appears twice in the header"
MSG_FILE_EMPTY_COLUMN = "column {n} of the header has no name"
MSG_FILE_NO_HEADER = "is empty: expected a header line"
MSG_FILE_TOO_MANY_ROWS = "has more than {limit:,} rows"
MSG_FILE_TOO_MANY_COLUMNS = "has {n:,} columns, more than the limit of {limit:,}"
MSG_FILE_NOT_PARQUET = "is not a readable Parquet file: {reason}"
MSG_FILE_COLUMN_TYPE = (
    "column {name!r} is of type {type}; expected text, a number, a boolean, a date or a time"
)

# Why a user scenario file's row or scenario was refused (marginflow.io.scenario_file).
MSG_SCENARIO_UNKNOWN_UNDERLYING = "{value!r} is not an underlying of the book"
MSG_SCENARIO_REFUSED = (
    "scenario {name!r} is refused: its row on line {line} was rejected "
    "(the rest of a scenario is not margined alone)"
)
MSG_SCENARIO_NONE = "has no valid rows"

# Why a SIMM input (a CRIF, an FX rates file) was refused, beyond the checks above.
MSG_CRIF_EMPTY_FILE = "the file is empty (no header line)"
MSG_CRIF_NOT_CSV = "cannot be read as CSV: {error}"
MSG_CRIF_NOT_PARQUET = "cannot be read as Parquet: {error}"
MSG_CRIF_SAME_COLUMN = "names the same CRIF column as {other!r} ({canonical})"
MSG_CRIF_COLUMN_TYPE = "column of type {type} cannot be read as text or numbers"
MSG_CRIF_TOO_MANY_ROWS = "has {rows:,} rows, more than the limit of {limit:,}"
MSG_END_DATE_RANGE = "must be between {low} and {high}, got {value!r}"
MSG_FX_ROW = "expected Currency,USDPerUnit, got {count} field(s)"
MSG_FX_TWICE = "{ccy} is given twice (first on line {first})"
MSG_FX_USD = "USD is 1 USD per unit, got {value!r}"
MSG_SIMM_PARAMETER_CONFLICT = (
    "{portfolio}: {risk_type} {qualifier} is given {count} different values ({rows}): "
    "the largest ({chosen:g}) is used"
)

# Why a token was refused (AuthenticationError.reason).
MSG_AUTH_MALFORMED = "token is malformed"
MSG_AUTH_ALGORITHM = "token algorithm is not HS256"
MSG_AUTH_UNKNOWN_KEY = "token is signed with an unknown key"
MSG_AUTH_SIGNATURE = "token signature does not verify"
MSG_AUTH_EXPIRED = "token has expired"
MSG_AUTH_NOT_YET_VALID = "token is not valid yet"
MSG_AUTH_ISSUER = "token issuer is not marginflow"
MSG_AUTH_AUDIENCE = "token audience is not marginflow-api"

# The broker going away (marginflow.stream.log.kafka, the workers, `marginflow lag`).
MSG_BROKER_UNREACHABLE = "broker at {address} is unreachable: {reason}"
MSG_BROKER_DOWN = "broker at {address} unreachable since {since}: {reason}"
MSG_BROKER_BACK = "broker at {address} reachable again after {seconds:.1f} s ({retries} retries)"
MSG_SNAPSHOT_FENCED = (
    "{group}: {topic}[{partition}] belongs to another member now (epoch {epoch} < {current}): "
    "its snapshot is not saved and the partition is left to its owner"
)


class DamagedFileError(MarginflowError):
    """A durable file (a log segment or its index, a durable mark, a snapshot, an offsets
    file) failed its checksum or format check. ``path`` names it and ``position`` is the byte
    where the damage was found. Nothing is repaired silently: ``marginflow log verify``
    lists the damage and ``marginflow log repair`` fixes it when asked."""

    def __init__(self, path: object, position: int, reason: str) -> None:
        self.path = str(path)
        self.position = position
        self.reason = reason
        super().__init__(MSG_DAMAGED.format(path=path, position=position, reason=reason))


# Durable files: damage, old formats and failed writes (full or read-only disk).
MSG_DAMAGED = "{path}: damaged at byte {position}: {reason}"
MSG_BAD_CHECKSUM = "checksum mismatch"
MSG_OLD_FORMAT = (
    "written by an older marginflow (format {found}, this one reads format {expected}); "
    "start a new log or cluster directory (`cluster up --fresh`)"
)
MSG_WRITE_FAILED = "{path}: cannot write: {reason}"

# The command line (marginflow.cli): options, outputs and faults. Tests match on these.
MSG_OPTION_IGNORED = "{option} does not apply with {other}: it would be ignored"
MSG_OPTION_TWICE = "{option} and {other} both set {setting}: give it once"
MSG_OUTPUT_IS_FOLDER = "{option} {path}: is a folder; give a file to write"
MSG_OS_ERROR = "{path}: {reason}"
MSG_INTERNAL_ERROR = (
    "internal error ({what}); rerun with --debug (or MARGINFLOW_DEBUG=1) for the traceback"
)
MSG_CANNOT_CLEAR = "cannot clear {path} for a new run: {reason}"
MSG_NOT_A_FOLDER = "{option} {path}: is not a folder"
MSG_DATABASE_ERROR = "the database {url}: {reason}"
