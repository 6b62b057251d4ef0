"""The memory fallback's relay of api-potluck token counts (``cfgstore_potluck_add_tokens``)
to the shared storage, or through an outage to the journal, each batch exactly once.

The traffic relay's mechanism (:class:`cfgstore_memory.traffic_relay.BatchRelay`) for
another kind of increment: uses queue here; one task takes what is pending as a batch (as
they came: token uses are not merged) under the next id of the instance's potluck sequence
(``<instance id>-k:<epoch>:<seq>``) and sends it with
``cfgstore_replica_add_potluck_tokens``, each batch until it is acknowledged, in order.
While the replicator serves degraded the batch goes to the journal instead, under the same
id (``potluck`` entries, :mod:`cfgstore_memory.replay`), replayed on recovery before any
later batch is sent live: a batch whose reply was lost is skipped by its id, so no token is
lost or doubled, also when the instance restarts during the outage.

Admissions are not relayed: they need the storage's answer (the daily limit holds across
instances), so an outage refuses them (:mod:`cfgstore_memory.guarded_ops`).
"""

from __future__ import annotations

from cfgstore.adapters.backend import Operations
from cfgstore.adapters.settings import Settings
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.potluck import TokenUse
from cfgstore_memory.replay import POTLUCK, potluck_data
from cfgstore_memory.replicator import Replicator
from cfgstore_memory.traffic_relay import BatchRelay


def potluck_instance(instance_id: str) -> str:
    """The name of an instance's potluck writer in batch ids."""
    return f"{instance_id}-k"


class PotluckRelay(BatchRelay[TokenUse]):
    what = "api-potluck token counts"

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
            operation="cfgstore_replica_add_potluck_tokens",
            kind=POTLUCK,
            merge=list,
            data=potluck_data,
            argument="uses",
        )
