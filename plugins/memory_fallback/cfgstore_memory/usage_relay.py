"""The memory fallback's relay of the model usage statistics
(:mod:`cfgstore.hookspecs.usage_stats`): this instance's counts to the shared storage, or
through an outage to the journal (``usage-stats`` entries, :mod:`cfgstore_memory.replay`),
each batch exactly once under the ids of the instance's usage writer
(``<instance id>-u:<epoch>:<seq>``). The mechanism is the traffic relay's
(:class:`cfgstore_memory.traffic_relay.BatchRelay`).
"""

from __future__ import annotations

from cfgstore.adapters.backend import Operations
from cfgstore.adapters.settings import Settings
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.usage_stats import UsageCount, merge_counts
from cfgstore_memory.replay import USAGE_STATS, usage_data
from cfgstore_memory.replicator import Replicator
from cfgstore_memory.traffic_relay import BatchRelay


def usage_instance(instance_id: str) -> str:
    """The name of an instance's usage writer in batch ids."""
    return f"{instance_id}-u"


class UsageRelay(BatchRelay[UsageCount]):
    what = "usage counts"

    def __init__(
        self,
        ops: Operations,
        replicator: Replicator,
        settings: Settings,
        batch_ids: BatchSequence,
    ) -> None:
        super().__init__(
            ops,
            replicator,
            settings,
            batch_ids,
            operation="cfgstore_replica_add_usage_stats",
            kind=USAGE_STATS,
            merge=merge_counts,
            data=usage_data,
        )
