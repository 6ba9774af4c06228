"""nowcast.data.parallel: results in order, bounded, on every local scheduler."""

import pytest

from nowcast.data.parallel import batches, map_ordered, resolve_workers


def _square(v: int) -> int:
    return v * v


@pytest.mark.parametrize(
    "scheduler,workers", [("serial", 1), ("threads", 3), ("processes", 2)]
)
def test_map_ordered_keeps_input_order(scheduler, workers):
    out = list(
        map_ordered(
            _square, range(23), workers=workers, scheduler=scheduler, progress=False
        )
    )
    assert out == [v * v for v in range(23)]


def test_map_ordered_is_lazy_and_bounded():
    consumed = []

    def items():
        for v in range(100):
            consumed.append(v)
            yield v

    gen = map_ordered(
        _square,
        items(),
        workers=2,
        scheduler="threads",
        max_in_flight=4,
        progress=False,
    )
    assert next(gen) == 0
    assert len(consumed) <= 5  # the window of 4 plus the one that filled it
    gen.close()


def test_batches_and_workers():
    assert [list(b) for b in batches(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="batch size"):
        list(batches([1], 0))
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        resolve_workers(-1)
    assert resolve_workers(None) >= 1


def test_unreachable_cluster_is_named(monkeypatch):
    monkeypatch.setattr("nowcast.data.parallel.CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(ConnectionError, match="could not reach the dask scheduler"):
        list(map_ordered(_square, [1], scheduler="tcp://127.0.0.1:1", progress=False))
