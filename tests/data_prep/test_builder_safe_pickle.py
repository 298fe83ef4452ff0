"""data_prep.safe_pickle admits numpy arrays and containers, refuses anything that runs code."""

import os
import pickle

import numpy as np
import pytest

from data_prep import safe_pickle


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_annotations_round_trip(protocol):
    data = {0: {"xyz": np.arange(126, dtype=np.float32).reshape(42, 3),
                "uv_vis": np.ones((42, 3)), "K": np.eye(3)},
            "meta": ["a", b"b", (1, 2.5), {3}, np.float64(2.0), np.int32(7)]}
    loaded = safe_pickle.loads(pickle.dumps(data, protocol=protocol))
    np.testing.assert_array_equal(loaded[0]["xyz"], data[0]["xyz"])
    assert loaded[0]["xyz"].dtype == np.float32
    assert loaded["meta"][:4] == data["meta"][:4] and loaded["meta"][5] == 7


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Plain:
    pass


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="system"):
        safe_pickle.loads(pickle.dumps({"anno": _RunsCode(marker)}))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="eval"):
        safe_pickle.loads(pickle.dumps(_Eval()))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_refuses_arbitrary_classes():
    with pytest.raises(pickle.UnpicklingError, match="_Plain"):
        safe_pickle.loads(pickle.dumps(_Plain()))
