"""Admin edits the storage confirmed lately, checked again after it went back in time.

The confirmed tail (:mod:`cfgstore_memory.confirmed_tail`) repairs this instance's hot-path
records after a rollback. Admin edits cannot simply be sent again: someone may have edited
the same entity since. So each confirmed edit of the configuration, a credential or the
pools is remembered for the tail's window, and after a detected rollback
:func:`reconcile` looks at each, oldest first:

* versioned (configuration, credentials): the stored document is the edit's → kept; the
  stored version is the one the edit replaced → the edit is written again with that
  version as the expected one (compare-and-set, so a writer racing us wins and we report);
  anything else → a conflict, reported (entity, the version lost, the version stored).
* pool edits (nodes carry no version): reported for the operator to check.

Every line :func:`reconcile` returns names the entity and the version it concerns; the
replicator logs each as an error (re-applied ones as warnings) and shows them in the
status. Memory only: an instance that dies with the storage reports nothing of its admin
edits (its records are repaired from the tail on disk).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import attrs

from cfgstore.adapters.backend import Operations
from cfgstore.errors import CfgStoreError, VersionConflict
from cfgstore.model.credentials import Credential
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.versions import ANY_VERSION


@attrs.frozen
class ConfigEdit:
    document: dict[str, JSONValue]
    replaced: str
    confirmed: str
    at_ms: int = attrs.field(factory=now_ms)


@attrs.frozen
class CredentialEdit:
    credential: Credential
    replaced: str | None
    confirmed: str
    at_ms: int = attrs.field(factory=now_ms)


@attrs.frozen
class PoolEdit:
    description: str
    """What was done, naming the nodes (``update node openai-custom/n1``)."""
    at_ms: int = attrs.field(factory=now_ms)


AdminEdit = ConfigEdit | CredentialEdit | PoolEdit


@attrs.frozen
class Outcome:
    line: str
    reapplied: bool
    """``True``: written again, nothing for the operator to do."""


class AdminTail:
    """Admin edits confirmed within ``window_s`` of the newest one, oldest first."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._edits: collections.deque[AdminEdit] = collections.deque()

    def add(self, edit: AdminEdit) -> None:
        if self.window_s <= 0:
            return
        self._edits.append(edit)
        while self._edits[0].at_ms < edit.at_ms - self.window_s * 1000:
            self._edits.popleft()

    def clear(self) -> None:
        self._edits.clear()

    @property
    def newest_at_ms(self) -> int:
        return self._edits[-1].at_ms if self._edits else 0

    def since(self, at_ms: int) -> list[AdminEdit]:
        """The edits confirmed at ``at_ms`` or later."""
        return [e for e in self._edits if e.at_ms >= at_ms]


async def reconcile(edits: Sequence[AdminEdit], ops: Operations) -> list[Outcome]:
    """Check each edit against the storage, oldest first, writing again what the rollback
    undid where the stored version is the one it replaced. A storage error is reported
    for the edit it met (the rest are still checked)."""
    outcomes: list[Outcome] = []
    for edit in edits:
        try:
            outcome = await _reconcile_one(edit, ops)
        except VersionConflict as exc:
            outcome = Outcome(
                f"{_name(edit)}: lost, and written meanwhile ({exc}); check it", False
            )
        except CfgStoreError as exc:
            outcome = Outcome(f"{_name(edit)}: could not be checked ({exc}); check it", False)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def _name(edit: AdminEdit) -> str:
    when = iso_ms(edit.at_ms)
    if isinstance(edit, ConfigEdit):
        return f"config version {edit.confirmed} (confirmed {when})"
    if isinstance(edit, CredentialEdit):
        c = edit.credential
        return f"credential {c.provider_type}/{c.uuid} version {edit.confirmed} (confirmed {when})"
    return f"pool edit {edit.description} (confirmed {when})"


async def _reconcile_one(edit: AdminEdit, ops: Operations) -> Outcome | None:
    if isinstance(edit, PoolEdit):
        return Outcome(f"{_name(edit)}: pool edits carry no version; check it is there", False)
    if isinstance(edit, ConfigEdit):
        stored = await ops["cfgstore_config_get"]()
        stored_doc, stored_version = stored.document, stored.version
    else:
        c = edit.credential
        found = await ops["cfgstore_credentials_get"](provider_type=c.provider_type, uuid=c.uuid)
        if found is None:
            return Outcome(f"{_name(edit)}: lost; the node or credential is gone now", False)
        stored_doc, stored_version = found.document, found.version
    if stored_doc == _document(edit):
        return None  # kept (or written again by someone: the same content either way)
    if edit.replaced is None or edit.replaced == ANY_VERSION or stored_version != edit.replaced:
        replaced = "an unknown version" if edit.replaced in (None, ANY_VERSION) else edit.replaced
        return Outcome(
            f"{_name(edit)}: lost and not written again: the storage holds version "
            f"{stored_version}, not {replaced} the edit replaced; check it",
            False,
        )
    if isinstance(edit, ConfigEdit):
        again = await ops["cfgstore_config_put"](
            document=edit.document, expected_version=edit.replaced
        )
    else:
        again = await ops["cfgstore_credentials_put"](
            credential=edit.credential, expected_version=edit.replaced
        )
    return Outcome(
        f"{_name(edit)}: lost (the storage held version {edit.replaced} it replaced); "
        f"written again as version {again}",
        True,
    )


def _document(edit: ConfigEdit | CredentialEdit) -> dict[str, JSONValue]:
    return edit.document if isinstance(edit, ConfigEdit) else edit.credential.document
