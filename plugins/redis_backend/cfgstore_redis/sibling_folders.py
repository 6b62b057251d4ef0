"""Kiro sibling files stored once per file (schema 3, ``redis-keys.md``).

Every other ``*.json`` file of a Kiro token's folder is merged into the token
(aiclient-formats §4.1), so in a folder of N tokens each credential has N - 1 siblings.
Rather than a copy per credential (N² documents), a folder's files are kept once, in the
hash ``{p}:folder:<folder>`` (file name → document JSON, ``@ver``, ``@refs``), and a
credential's ``folder`` field names the folder and its own file: its siblings are the
folder's files but that one. Writing a credential's siblings makes the folder's other
files exactly those (it is one folder: every credential of it sees them).

This module holds the client side: the folder reference of a file key, a per-process
cache of folders by ``@ver`` (so that a write sends only what changed and a read parses a
folder once), and the diff a write sends.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping

import attrs

from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.jsjson import JSONValue
from cfgstore_redis.keys import SEPARATOR

VERSION = "@ver"
REFS = "@refs"
"""Fields of a folder hash besides its files (names of ``*.json`` files never start so)."""

Docs = dict[str, dict[str, JSONValue]]


def folder_reference(file_key: str) -> str:
    """The ``folder`` field of the credential of ``file_key``: its folder and its name."""
    folder, name = posixpath.split(file_key)
    return f"{folder}{SEPARATOR}{name}"


def split_reference(reference: str) -> tuple[str, str]:
    """``(folder, excluded name)`` of a ``folder`` field."""
    folder, _, name = reference.partition(SEPARATOR)
    return folder, name


def check_names(siblings: Mapping[str, object], ident: str) -> None:
    """Refuse a sibling name that is not a plain ``*.json`` file name (as the file
    backend does) before anything is written."""
    for name in siblings:
        plain = name == posixpath.basename(name) and "\\" not in name
        if not plain or not name.endswith(".json") or name.startswith(".") or SEPARATOR in name:
            problem = "not a plain *.json file name"
            raise InvalidData("credential", f"{ident}: siblings.{name}", problem)


@attrs.define
class Folder:
    """What this process last read or wrote of one folder hash, at ``version``. The
    documents are shared with the credentials read from it (read-only, see
    :class:`cfgstore.model.credentials.Credential`), so that a folder of N tokens costs N
    documents in this process too, and a credential read and written back is recognised
    by identity, without comparing its N - 1 siblings."""

    version: str
    docs: Docs
    texts: dict[str, str]
    """The stored JSON of each file."""
    names: list[str] = attrs.Factory(list)
    """The files in directory (name) order."""

    @classmethod
    def from_hash(cls, fields: Mapping[str, str], key: str) -> Folder:
        texts = {k: v for k, v in fields.items() if not k.startswith("@")}
        docs: Docs = {}
        for name, text in texts.items():
            document = jsjson.loads(text, f"redis {key} {name}")
            if isinstance(document, dict):
                docs[name] = document
        return cls(fields.get(VERSION, "0"), docs, texts, sorted(docs))

    def siblings(self, excluded: str) -> Docs:
        """The files but ``excluded``, in directory (name) order (shared documents)."""
        docs = self.docs
        return {name: docs[name] for name in self.names if name != excluded}

    def diff(
        self, siblings: Mapping[str, dict[str, JSONValue]], excluded: str
    ) -> tuple[dict[str, str], list[str]]:
        """What makes the files but ``excluded`` exactly ``siblings``: (name → JSON to
        set, names to remove)."""
        docs = self.docs
        sets: dict[str, str] = {}
        for name, doc in siblings.items():
            if name == excluded or docs.get(name) is doc:
                continue
            if self._holds(name, doc):
                docs[name] = doc  # the same content: recognised by identity from now on
            else:
                sets[name] = json.dumps(doc, ensure_ascii=False)
        removed = [n for n in self.texts if n != excluded and n not in siblings]
        return sets, removed

    def _holds(self, name: str, doc: dict[str, JSONValue]) -> bool:
        """Whether file ``name`` is stored as ``doc``: the same JSON text (same keys in
        the same order, same values of the same JSON types: ``True`` is not ``1``)."""
        stored = self.docs.get(name)
        if stored is None or list(stored.items()) != list(doc.items()):
            return False
        return self.texts[name] == json.dumps(doc, ensure_ascii=False)

    def apply(
        self,
        sets: Mapping[str, str],
        removed: list[str],
        siblings: Mapping[str, dict[str, JSONValue]],
        version: str,
    ) -> None:
        """Record a write the server acknowledged at folder ``version``."""
        for name, text in sets.items():
            self.docs[name], self.texts[name] = siblings[name], text
        for name in removed:
            self.docs.pop(name, None)
            self.texts.pop(name, None)
        if sets or removed:
            self.names = sorted(self.docs)
        self.version = version

    def set_own(self, name: str, text: str, document: JSONValue) -> None:
        """Record that a credential's write set its own file ``name`` (the sibling of the
        folder's other tokens) to ``text`` (``document`` parsed from it, this cache's own
        object), within the write :meth:`apply` recorded."""
        if isinstance(document, dict):
            if name not in self.docs:
                self.names = sorted([*self.docs, name])
            self.docs[name], self.texts[name] = document, text


def legacy_siblings(text: str, key: str) -> Docs:
    """A schema-2 ``siblings`` field (name → document JSON object, a copy per credential)."""
    parsed = jsjson.loads(text, f"redis {key}")
    if not isinstance(parsed, dict):
        return {}
    return {k: v for k, v in parsed.items() if isinstance(v, dict)}
