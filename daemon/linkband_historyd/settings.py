"""Typed settings: one frozen object with a frozen section per part of the daemon.

``config.load()`` returns a :class:`Settings`; a process reads ``settings.ingest.batch_size``
rather than a string key, so a misspelt name fails where it is written and nothing can
change a value behind another process's back. The section classes are generated from
``config.OPTIONS`` (:func:`make_sections`), so every option is declared, and its default
written, once; the values the daemon derives from them are declared here, in
``DERIVED`` (filled by ``config.finish``) and ``RUNTIME`` (filled by the process that
starts a child). A change is a new object (:meth:`Settings.updated`), as a reload makes.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

# derived by config.finish from the options: printed by --print-config with them
DERIVED: dict[str, Any] = {
    "daemon.db_path": "",
    "daemon.control_endpoint": "",        # the writer's control socket
    "daemon.scheduler_endpoint": "",      # the scheduler's socket
    "security.curve_own": False,          # CURVE with the user's own keys (config._check_security)
}
# set by the supervisor or the query process for its children
RUNTIME: dict[str, Any] = {
    "daemon.started_at": 0.0,
    "daemon.config_file": None,           # what a reload reads again (config.reload_file)
    "daemon.cli": None,
    "daemon.supervisor_pid": None,
    "query.backend_endpoint": "",         # a query worker's socket to the query process
    "query.worker_id": b"",
}

SECTIONS = ("daemon", "ingest", "query", "events", "storage", "scheduler", "collector",
            "trends", "retention", "archive", "http", "security", "supervisor", "dataset")


def _field(default):
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.copy(default))
    return dataclasses.field(default=default)


def make_sections(defaults: dict[str, Any], module: str) -> dict[str, type]:
    """One frozen dataclass per section of ``defaults`` (``"section.name": default``,
    the options then DERIVED and RUNTIME), named ``IngestSettings`` etc.; ``module`` is
    where they are bound, so a spawned child can unpickle them."""
    by_section: dict[str, list] = {}
    for key, default in {**defaults, **DERIVED, **RUNTIME}.items():
        section, name = key.split(".", 1)
        by_section.setdefault(section, []).append((name, Any, _field(default)))
    unknown = set(by_section) - set(SECTIONS)
    if unknown:
        raise TypeError(f"sections {sorted(unknown)} are not fields of Settings")
    out = {}
    for section, fields in by_section.items():
        name = f"{section.title()}Settings"
        cls = dataclasses.make_dataclass(name, fields, frozen=True)
        cls.__module__, cls.__qualname__ = module, name
        cls.__doc__ = f"The [{section}] settings (see config.OPTIONS)."
        out[section] = cls
    return out


@dataclass(frozen=True)
class Settings:
    """Every setting of the daemon, a section per part (see ``config.OPTIONS``)."""
    daemon: Any
    ingest: Any
    query: Any
    events: Any
    storage: Any
    scheduler: Any
    collector: Any
    trends: Any
    retention: Any
    archive: Any
    http: Any
    security: Any
    supervisor: Any
    dataset: Any

    @classmethod
    def from_flat(cls, values: dict[str, Any], sections: dict[str, type]) -> "Settings":
        """Build from ``"section.name": value`` pairs; a field not given keeps its default."""
        grouped: dict[str, dict] = {s: {} for s in sections}
        for key, value in values.items():
            section, name = key.split(".", 1)
            grouped[section][name] = value
        return cls(**{s: sections[s](**grouped[s]) for s in sections})

    def lookup(self, key: str) -> Any:
        """The value of ``"section.name"``: for the code that walks the option table
        (the reload plan, ``--print-config``); everything else reads the attribute."""
        section, name = key.split(".", 1)
        return getattr(getattr(self, section), name)

    def items(self, runtime: bool = False) -> list[tuple[str, Any]]:
        """``("section.name", value)`` for every option and derived value (and the
        run-time ones when ``runtime``), in declaration order."""
        out = []
        for section in SECTIONS:
            for f in dataclasses.fields(getattr(self, section)):
                key = f"{section}.{f.name}"
                if runtime or key not in RUNTIME:
                    out.append((key, self.lookup(key)))
        return out

    def updated(self, changes: dict[str, Any]) -> "Settings":
        """A copy with ``"section.name": value`` changes (each section replaced whole)."""
        by_section: dict[str, dict] = {}
        for key, value in changes.items():
            section, name = key.split(".", 1)
            by_section.setdefault(section, {})[name] = value
        return dataclasses.replace(self, **{
            s: dataclasses.replace(getattr(self, s), **fields) for s, fields in by_section.items()})
