"""Runs the xnat:archive library component from Python, through the PyPI ``wasmtime`` package.

    lib = XnatArchive("target/guest/wasm32-wasip2/release/xnat_plugin.wasm")   # compiled once
    rows = lib.prearchive_list([Grant("/prearchive", "/data/prearchive", writable=False)])

Every call gets a fresh store and instance with its own grants, as the Rust host does. A grant is a host
directory seen by the component at a guest path (``/archive``, ``/prearchive``), read-only or read-write
(``WasiConfig.preopen_dir(host, guest, fs_mutable)``).

Values cross as wasmtime-py represents them: a WIT record is a ``Record`` whose attributes carry the WIT
field names (``getattr(row, "folder-name")``), flags are a ``set`` of names, enums and strings are ``str``,
an option is the value or ``None``. A ``result<T, error>`` comes back as the ``T`` itself or, when the
component refused, as a ``Variant`` (``tag`` = ``bad-request``, ``forbidden``, ``not-found``, ...,
``payload`` = the message); ``call`` turns that into a ``ComponentError``.
"""

from __future__ import annotations

import os

import threading
from dataclasses import dataclass
from typing import Any, Optional

from wasmtime import Config, Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, Variant

PACKAGE = "xnat:archive"
VERSION = "0.1.0"


def _never_called(name):
    def refuse(*_args):
        raise RuntimeError(f"{name} was called, but this host answered that it does not provide it")

    return refuse


@dataclass(frozen=True)
class Grant:
    """``host`` is seen by the component at ``guest``; writes only when ``writable``."""

    guest: str
    host: str
    writable: bool


@dataclass(frozen=True)
class Limits:
    """Per call, as the Rust host's ``Limits``: linear memory, and run time (``None``: no limit)."""

    memory_bytes: int = 1 << 30
    timeout: Optional[float] = None


class ComponentError(Exception):
    """The component's ``error`` variant: ``kind`` is its case, ``message`` its text."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Progress:
    """The ``xnat:archive/progress`` import; override what you want to see."""

    def begin(self, phase: str, total: int) -> None:
        pass

    def advance(self, units: int) -> None:
        pass

    def end(self) -> None:
        pass


def record(**fields: Any) -> Record:
    """A WIT record; keyword arguments with ``_`` stand for the WIT names with ``-`` (``event_id``)."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def plain(value: Any) -> Any:
    """Records and variants as dicts and lists (for printing and JSON)."""
    if isinstance(value, Record):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, Variant):
        return {"tag": value.tag, "val": plain(value.payload)} if value.payload is not None else {"tag": value.tag}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, set):
        return sorted(value)
    return value


class XnatArchive:
    """The component, compiled once, and a linker that provides its imports."""

    def __init__(self, wasm_path: str):
        config = Config()
        config.cache = True  # wasmtime's on-disk cache of compiled code: the second start is fast
        config.epoch_interruption = True  # for timeouts: a call stops when the engine's epoch moves on
        self.engine = Engine(config)
        self.component = Component.from_file(self.engine, wasm_path)
        self.progress = Progress()  # the current call's (see `call`)
        self.linker = Linker(self.engine)
        self.linker.add_wasip2()
        with self.linker.root() as root:
            # The world imports `progress`; the host must provide it, or instantiation fails.
            with root.add_instance(f"{PACKAGE}/progress@{VERSION}") as p:
                p.add_func("begin", lambda _store, phase, total: self.progress.begin(phase, total))
                p.add_func("advance", lambda _store, units: self.progress.advance(units))
                p.add_func("end", lambda _store: self.progress.end())
            # `holders` names the instance that takes a lock and says whether a lock's instance still runs, so
            # that the lock of one that died is taken over at once. This host cannot tell: the lock's 30 s lease
            # decides (an empty name, and None for "cannot tell").
            with root.add_instance(f"{PACKAGE}/holders@{VERSION}") as h:
                h.add_func("this", lambda _store: "")
                h.add_func("alive", lambda _store, _instance: None)
            # `digests` lets a host hash files natively and on several cores, beneath a folder the component lends.
            # This host does not (`computes` is False): the component hashes them itself and never calls
            # `digest-files` (wasmtime-py 50 cannot take the borrowed folder anyway).
            with root.add_instance(f"{PACKAGE}/digests@{VERSION}") as d:
                d.add_func("computes", lambda _store: False)
                d.add_func("digest-files", lambda _store, _folder, _paths, _algorithm: [])
            # `listings` lets a host list a folder in one call, beneath a folder the component lends. This host
            # does not (`lists` is False): the component lists through wasi:filesystem and never calls
            # `list-folder`, the walks or `watch-tree` (were one called, the exception would stop the call, never
            # pass for an empty folder).
            with root.add_instance(f"{PACKAGE}/listings@{VERSION}") as l:
                l.add_func("lists", lambda _store: False)
                l.add_func("list-folder", _never_called("listings.list-folder"))
                l.add_func("walk-tree", _never_called("listings.walk-tree"))
                l.add_func("next-walked", _never_called("listings.next-walked"))
                l.add_func("end-walk", _never_called("listings.end-walk"))
                l.add_func("watch-tree", _never_called("listings.watch-tree"))
            # `renames` lets a host move many files in one call, never replacing one. This host does not
            # (`renames` is False): the component moves them through wasi:filesystem and never calls
            # `rename-files`, `start-renames` or `renamed`.
            with root.add_instance(f"{PACKAGE}/renames@{VERSION}") as r:
                r.add_func("renames", lambda _store: False)
                r.add_func("rename-files", _never_called("renames.rename-files"))
                r.add_func("start-renames", _never_called("renames.start-renames"))
                r.add_func("renamed", _never_called("renames.renamed"))
            # `types` has only types, but the component imports it as an instance all the same.
            with root.add_instance(f"{PACKAGE}/types@{VERSION}"):
                pass

    def call(
        self,
        grants: list[Grant],
        interface: str,
        function: str,
        *args: Any,
        progress: Optional[Progress] = None,
        limits: Limits = Limits(),
    ) -> Any:
        """Calls ``interface.function(*args)`` on a fresh instance that sees exactly ``grants``.

        A host failure (a grant that cannot be opened, a trap, a limit hit) raises ``WasmtimeError`` or
        ``Trap``; the component's refusal raises ``ComponentError``.
        """
        self.progress = progress or Progress()
        store = Store(self.engine)
        store.set_limits(memory_size=limits.memory_bytes)
        # With a timeout, the timer's increment_epoch stops the call; without, practically never. (The engine
        # is shared: a timer also shortens other calls running at that moment in other threads.)
        store.set_epoch_deadline(1 if limits.timeout else 1 << 62)
        wasi = WasiConfig()  # no environment, no arguments, no stdio: nothing but the grants
        for g in grants:
            wasi.preopen_dir(g.host, g.guest, fs_mutable=g.writable)
        store.set_wasi(wasi)
        timer = threading.Timer(limits.timeout, self.engine.increment_epoch) if limits.timeout else None
        if timer:
            timer.start()
        try:
            instance = self.linker.instantiate(store, self.component)
            exported = instance.get_export_index(store, f"{PACKAGE}/{interface}@{VERSION}")
            func = instance.get_func(store, instance.get_export_index(store, function, exported))
            result = func(store, *args)
        finally:
            if timer:
                timer.cancel()
        if isinstance(result, Variant):  # the `error` of `result<T, error>`
            raise ComponentError(result.tag, result.payload)
        return result

    # The calls of the Rust host's `Runtime`, with WIT's parameters.

    def prearchive_list(
        self, grants: list[Grant], project: Optional[str] = None, limits: Limits = Limits()
    ) -> list[Record]:
        return self.call(grants, "prearchive", "list-sessions", project, limits=limits)

    def archived_scans(self, grants: list[Grant], experiment: str) -> list[Record]:
        return self.call(grants, "archive-data", "scans", experiment)

    def archived_resources(self, grants: list[Grant], item: str) -> list[Record]:
        return self.call(grants, "archive-data", "resources", item)

    def archived_files(self, grants: list[Grant], resource: str) -> list[Record]:
        return self.call(grants, "archive-data", "files", resource)

    def archived_read_file(self, grants: list[Grant], resource: str, name: str, chunk: int = 1 << 20) -> bytes:
        """A listed file's bytes, read chunk by chunk (each chunk a call on a fresh instance)."""
        out = bytearray()
        while True:
            part = self.call(grants, "archive-data", "read-file", resource, name, len(out), chunk)
            if not part:
                return bytes(out)
            out += bytes(part)

    def import_(self, grants: list[Grant], upload: str, parameters: dict[str, str]) -> Record:
        """POST /data/services/import: the zip (or DICOM file) `upload` sorted into prearchive sessions, with
        XNAT's parameters by name (``import-handler``, ``dest``, ``project``, ...). Its folder is granted
        read-only at /upload for this call only."""
        folder, name = os.path.split(os.path.abspath(upload))
        upload_grant = Grant("/upload", folder, writable=False)
        return self.call(grants + [upload_grant], "importer", "import", name, list(parameters.items()))

    def validate(self, grants: list[Grant], src: str, **params: Any) -> list[Record]:
        request = record(
            src=[src],
            project=params.get("project"),
            subject=params.get("subject"),
            label=params.get("label"),
            dest=params.get("dest"),
            overwrite=params.get("overwrite", "none"),
            quarantine=params.get("quarantine", False),
            trigger_pipelines=params.get("trigger_pipelines", False),
            site_id=params.get("site_id"),
        )
        return self.call(grants, "validation", "validate", request)

    def refresh(
        self,
        grants: list[Grant],
        resources: list[str],
        mode: str = "apply",
        options: frozenset[str] = frozenset(),  # empty: all four (append, checksum, delete, populate-stats)
        algorithm: str = "md5",
        user: Optional[str] = None,
        progress: Optional[Progress] = None,
    ) -> list[Record]:
        request = record(
            resources=resources, options=set(options), algorithm=algorithm, mode=mode, user=user, event_id=None,
            trust_unchanged=None,
        )
        return self.call(grants, "catalogs", "refresh", request, progress=progress)

