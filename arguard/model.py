"""The records that flow between the stages: Line → Event → Alert → Response → Block (and
Lift, the request to end one); FileChange (with its FileStates) → Event for the file
integrity source.

The per-line records (Line, Predecoded, Event) are plain slotted dataclasses, not frozen ones:
a frozen dataclass costs about four times as much to construct, and several are made for every
line read. No stage changes a record it did not create.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(slots=True)
class Line:
    """One log line as a source read it.

    Sources that split fields themselves (the journal) set `program_name`, `hostname`,
    `timestamp` and `pid`; predecoding then takes the text as the bare message.
    `attested_pid` is the pid of the process that wrote the entry as the kernel told the
    journal (`_PID`), unlike `pid` and anything in the text, which the writer chooses; only
    the journal source sets it.
    """

    text: str
    location: str
    received: float
    program_name: str | None = None
    hostname: str | None = None
    timestamp: float | None = None
    pid: str | None = None
    attested_pid: int | None = None


@dataclass(slots=True)
class Predecoded:
    """What the syslog (or other) header said, and the message after it."""

    message: str
    timestamp: str | None = None
    time: float | None = None
    hostname: str | None = None
    program_name: str | None = None
    pid: str | None = None
    header: bool = False


@dataclass(slots=True)
class Event:
    line: Line
    pre: Predecoded
    time: float
    decoder: str | None = None
    decoder_child: str | None = None
    category: str = "syslog"
    fields: dict[str, str] = field(default_factory=dict)
    #: the line held more than one candidate for its address: none was decoded
    ambiguous: bool = False
    #: the fields of its first-time-seen key (the `fts` of the decoder that took it)
    fts: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        return self.pre.message


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """The part of a rule that an alert shows."""

    id: int
    level: int
    description: str
    groups: tuple[str, ...]
    mitre: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    rule: RuleInfo
    event: Event
    firedtimes: int
    #: the lines of the earlier events a frequency rule counted for it, oldest first
    previous: tuple[str, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        """The log lines that led to the alert: the counted ones, then its own."""
        return (*self.previous, self.event.line.text)


@dataclass(frozen=True, slots=True)
class Origin:
    """The fleet decision a request comes from: another host decided it (arguard.fleet)."""

    host: str
    decision: int                  # the decision's id in the fleet's database
    rule_id: int | None = None
    alert_id: str | None = None
    expires_at: float | None = None   # absolute, as the deciding host set it


@dataclass(frozen=True, slots=True)
class Response:
    """What the policy decided for one active-response binding and one alert (or one
    operator request, or one decision of another fleet host: `origin`).

    `location` and `agents` are the binding's: "local" runs here only; "all" here and on
    every host of the fleet; "defined-agent" on the hosts named in `agents` (here too only
    when this host is one of them)."""

    command: str
    target: str
    timeout: int | None
    alert: Alert | None
    offence: int = 1
    skipped: str | None = None
    location: str = "local"
    agents: tuple[str, ...] = ()
    origin: Origin | None = None


BlockState = Literal["active", "lifted"]


@dataclass(frozen=True, slots=True)
class Block:
    """One timed (or permanent) response, as kept in the `blocks` table."""

    target: str
    kind: Literal["ip", "user"]
    command: str
    rule_id: int | None
    alert_id: str | None
    created_at: float
    expires_at: float | None
    offence: int
    state: BlockState = "active"


FileEvent = Literal["added", "modified", "deleted"]
#: how a file change was found: by the realtime watch, or by a scan (Wazuh's "scheduled")
FoundBy = Literal["realtime", "scheduled"]


@dataclass(frozen=True, slots=True)
class FileState:
    """One file as an integrity check saw it. `sha256` is None when the content was not
    read (sha256 not among the checks, or the file could not be read); for a symlink that
    is not followed, size and sha256 are those of the link's own text."""

    kind: Literal["file", "symlink"]
    size: int
    mode: int          # permission bits (stat.S_IMODE)
    uid: int
    gid: int
    inode: int
    device: int
    mtime_ns: int
    ctime_ns: int
    sha256: str | None


@dataclass(frozen=True, slots=True)
class FileChange:
    """One change the integrity source reports (Wazuh's FIM event). `path` is the path as
    shown: bytes of a name that are not UTF-8 appear as `\\xNN`. `changed` names the
    changed attributes as Wazuh's `changed_attributes` does, in its order."""

    path: str
    event: FileEvent
    found_by: FoundBy
    before: FileState | None
    after: FileState | None
    changed: tuple[str, ...]
    time: float


@dataclass(frozen=True, slots=True)
class KnownGood:
    """The known-good state of a watched file (`keep_copies`): what the restore-file action
    puts back. `path` and `root` (the watched path it is under) are the file system's
    bytes; the content is the copy named `sha256`."""

    path: bytes
    root: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Lift:
    """A request to lift one block now (its expiry, an operator, the daemon's exit, or an
    unblock decided on another fleet host: `origin`)."""

    block: Block
    operator: bool = False
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Offence:
    """One response that added or extended a block, as `arguard explain` shows it: when,
    for which alert (an operator's block has none), for how long, and the log lines that
    led to it."""

    at: float
    verb: Literal["add", "extend"]
    #: the offence number (1 = first; None: an operator's block)
    offence: int | None
    rule_id: int | None
    level: int | None
    description: str | None
    alert_id: str | None
    #: seconds the response asked for (None: permanent)
    timeout: float | None
    #: the block's expiry after it (None: permanent)
    expires_at: float | None
    lines: tuple[str, ...] = ()
