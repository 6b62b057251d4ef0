"""The key schema (see ``redis-keys.md``). Every key carries one hash tag, ``{<prefix>}``,
so every multi-key script runs on Redis Cluster too (all keys live in one slot)."""

from __future__ import annotations

from cfgstore.errors import InvalidData
from cfgstore.model.names import SEPARATOR, type_name_problem, uuid_problem

__all__ = ["SEPARATOR", "Keys", "check_type_name", "check_uuid"]
# SEPARATOR joins key names in ``@layout``/``@order`` fields: a plain string Lua can append
# to without decoding JSON.


class Keys:
    def __init__(self, prefix: str) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise InvalidData("CFGSTORE_REDIS_PREFIX", prefix, "must be non-empty, without braces")
        self.tag = "{" + prefix + "}"
        self.meta = f"{self.tag}:meta"
        self.revision = f"{self.tag}:rev"
        self.channel = f"{self.tag}:changes"
        self.types = f"{self.tag}:types"
        self.config = f"{self.tag}:config"
        self.system_prompt = f"{self.tag}:system_prompt"
        self.custom_models = f"{self.tag}:custom_models"
        self.plugins = f"{self.tag}:plugins"
        self.password = f"{self.tag}:password"
        self.usage = f"{self.tag}:usage"
        self.kept_files = f"{self.tag}:files"
        self.sessions = f"{self.tag}:sessions"
        self.instances = f"{self.tag}:instances"
        self.batches = f"{self.tag}:batches"
        """Per writer instance, the ``<epoch>:<seq>`` of its last applied record batch."""
        self.usage_stats = f"{self.tag}:ustats"
        """The model usage statistics: every scope's block (:mod:`.usage_stats_ops`)."""
        self.usage_stats_order = f"{self.tag}:ustats:order"
        """The statistics' scopes in the order first counted (the document's key order)."""

    def nodes(self, provider_type: str) -> str:
        return f"{self.tag}:nodes:{provider_type}"

    def node(self, provider_type: str, uuid: str) -> str:
        return f"{self.tag}:node:{provider_type}:{uuid}"

    @property
    def credential_base(self) -> str:
        """Prefix of the credential keys: a script appends a node's ``@cred``."""
        return f"{self.tag}:cred:"

    def credential(self, file_key: str) -> str:
        """The credential of one token file (``file_key``: its ``same_file_key``)."""
        return self.credential_base + file_key

    def folder(self, folder: str) -> str:
        """The sibling files of one token folder (``folder``: the ``same_file_key`` of
        its path), stored once for every Kiro credential of the folder."""
        return f"{self.tag}:folder:{folder}"

    def legacy_credential(self, provider_type: str, uuid: str) -> str:
        """Where schema 1 kept a node's credential (one hash per node); read only by the
        upgrade to schema 2, which moves it to its file's key."""
        return self.credential_base + f"{provider_type}:{uuid}"

    @property
    def upgrade_lock(self) -> str:
        """Held by the one instance upgrading the namespace's schema."""
        return self.lock_base + "upgrade"

    def lease(self, name: str) -> str:
        """A named lease (:mod:`cfgstore.hookspecs.leases`): the holder's token."""
        return f"{self.tag}:lease:{name}"

    def plugin_log(self, plugin: str) -> str:
        """A plugin log (:mod:`cfgstore.hookspecs.plugin_logs`): a list, newest first."""
        return f"{self.tag}:plog:{plugin}"

    @property
    def lock_base(self) -> str:
        """Prefix of the refresh locks: ``file:<file key>``, or ``node:<type>:<uuid>``
        for a node that names no file."""
        return f"{self.tag}:lock:"

    def forward(self, provider_type: str, uuid: str) -> str:
        return f"{self.tag}:fwd:{provider_type}:{uuid}"

    def operation(self, op_id: str) -> str:
        """The record of one applied batch under a legacy (unsequenced) id."""
        return f"{self.tag}:op:{op_id}"

    def session(self, digest: str) -> str:
        return f"{self.tag}:session:{digest}"

    def instance(self, instance_id: str) -> str:
        return f"{self.tag}:instance:{instance_id}"

    def login(self, digest: str) -> str:
        return f"{self.tag}:login:{digest}"

    def traffic(self, minute_ms: int) -> str:
        """The traffic counters of one minute (epoch ms of its start), every type's."""
        return f"{self.tag}:traffic:{minute_ms}"


def check_type_name(provider_type: str) -> None:
    """Provider types become part of key names: refuse what would make keys ambiguous."""
    problem = type_name_problem(provider_type)
    if problem:
        raise InvalidData("provider type", repr(provider_type), problem)


def check_uuid(uuid: str) -> None:
    problem = uuid_problem(uuid)
    if problem:
        raise InvalidData("provider node", repr(uuid), problem)
