"""The confirmed tail on disk: what an instance killed with its host finds again.

Real files in a temporary state directory; the window is measured on the wall clock
between the batches' own acknowledgement times, so a short window ages batches out while
the test adds more."""

from __future__ import annotations

from pathlib import Path

from cfgstore.model.records import Success
from cfgstore.model.timefmt import now_ms
from cfgstore_memory.confirmed_tail import ConfirmedTail
from tests.memory_fallback.conftest import TYPE
from tests.support.waiting import until

MAX_BYTES = 1 << 20


def _batch(n: int) -> list[Success]:
    return [Success(TYPE, f"n{n}", 1_700_000_000_000 + n)]


async def test_saved_batches_are_loaded_again_in_order(tmp_path: Path) -> None:
    """Batches saved before a crash (no close) come back with their records and ids,
    oldest first; cleared ones do not."""
    path = tmp_path / "confirmed-tail"
    tail = await ConfirmedTail.open(path, 5.0, MAX_BYTES)
    for n in range(3):
        tail.add(_batch(n), f"i:1:{n + 1}")
    await tail.save()
    again = await ConfirmedTail.open(tmp_path / "copy", 5.0, MAX_BYTES)
    await again.close()
    (tmp_path / "copy").write_bytes(path.read_bytes())  # the file as a crash leaves it
    loaded = await ConfirmedTail.open(tmp_path / "copy", 5.0, MAX_BYTES)
    assert loaded.batches() == tail.batches()
    assert [op_id for _, op_id in loaded.batches()] == ["i:1:1", "i:1:2", "i:1:3"]
    await loaded.close()

    tail.clear()
    await tail.save()
    await tail.close()
    assert (await ConfirmedTail.open(path, 5.0, MAX_BYTES)).batches() == []


async def test_the_file_stays_bounded_and_aged_out_batches_are_not_loaded(
    tmp_path: Path,
) -> None:
    """Under a steady stream the file holds at most about twice the window's batches (it
    is rewritten once the aged-out ones are as many as the kept), and loading it gives
    exactly the batches memory still held: none memory dropped comes back."""
    path = tmp_path / "confirmed-tail"
    tail = await ConfirmedTail.open(path, 0.05, MAX_BYTES)
    started = now_ms()
    added = 0

    async def add_one() -> bool:
        nonlocal added
        added += 1
        tail.add(_batch(added), f"i:1:{added}")
        await tail.save()
        assert tail.journal is not None
        assert tail.journal.depth <= 2 * len(tail) + 1, (tail.journal.depth, len(tail))
        return now_ms() - started > 300

    await until(add_one, "batches added for six windows", step_s=0.002)
    assert len(tail) < added
    held = tail.batches()
    await tail.close()
    loaded = await ConfirmedTail.open(path, 0.05, MAX_BYTES)
    assert loaded.batches() == held
    await loaded.close()
