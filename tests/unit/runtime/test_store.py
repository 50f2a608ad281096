"""The watch cache with the operator's own writes on top (read your own writes)."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.core.resources import DATASETS, JOBS
from flywheel.runtime import store as store_module
from flywheel.runtime.store import CachedStore, trim
from tests.support.fakekube import FakeIndex


def _obj(name: str, version: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
        "status": status,
    }


def _phase(store: CachedStore) -> str:
    found = store.get(DATASETS, "ns", "d")
    assert found is not None
    return str(found["status"]["phase"])


def _store() -> tuple[CachedStore, FakeIndex]:
    index = FakeIndex()
    store = CachedStore()
    store.attach(DATASETS, index)
    return store, index


def test_a_write_is_read_back_until_the_watch_delivers_it() -> None:
    store, index = _store()
    index.put(_obj("d", "1", phase="old"))
    store.wrote(DATASETS, _obj("d", "5", phase="new"))
    assert _phase(store) == "new"
    index.put(_obj("d", "3", phase="older event"))  # an event from before the write
    store.observed(DATASETS, _obj("d", "3"), gone=False)
    assert _phase(store) == "new"
    index.put(_obj("d", "5", phase="new"))
    store.observed(DATASETS, _obj("d", "5"), gone=False)
    index.put(_obj("d", "7", phase="someone else's later change"))
    assert _phase(store) == "someone else's later change"


def test_a_no_op_write_needs_no_overlay_and_an_old_one_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, index = _store()
    index.put(_obj("d", "4", phase="same"))
    store.wrote(DATASETS, _obj("d", "4", phase="same"))
    index.put(_obj("d", "6", phase="later"))
    assert _phase(store) == "later"
    monkeypatch.setattr(store_module, "RECALL", 0.0)
    store.wrote(DATASETS, _obj("d", "9", phase="never delivered"))
    assert _phase(store) == "later", "a relist skipped it"


def test_creates_and_deletes_show_at_once() -> None:
    store, index = _store()
    index.put(_obj("a", "1"))
    store.wrote(DATASETS, _obj("b", "2"))
    assert [o["metadata"]["name"] for o in store.list(DATASETS, "ns")] == ["a", "b"]
    store.deleted(DATASETS, "ns", "a")
    assert store.get(DATASETS, "ns", "a") is None
    assert [o["metadata"]["name"] for o in store.list(DATASETS, "ns")] == ["b"]
    store.observed(DATASETS, _obj("a", "1"), gone=True)
    del index[("ns", "a")]
    assert store.get(DATASETS, "ns", "a") is None


def test_an_unwatched_resource_is_a_programming_error() -> None:
    store, _ = _store()
    with pytest.raises(LookupError, match="jobs are not watched"):
        store.get(JOBS, "ns", "j")


def test_the_cache_keeps_no_managed_fields_and_no_job_template() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "j", "managedFields": [{"manager": "x"}]},
        "spec": {"backoffLimit": 0, "template": {"spec": {"containers": []}}},
        "status": {"active": 1},
    }
    trimmed = trim(JOBS, job)
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["spec"] == {"backoffLimit": 0}
    assert job["spec"]["template"], "the original is left alone"
