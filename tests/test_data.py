from __future__ import annotations

import numpy as np
import pytest

from modelport.data import generate_feed, load_feed, split_batches
from modelport.errors import InputError
from modelport.signature import Signature, TensorSpec

SIG = Signature((TensorSpec("x", "float32", ("batch", 4)),))
TOK = Signature(
    (
        TensorSpec("input_ids", "int64", ("batch", "sequence")),
        TensorSpec("attention_mask", "int64", ("batch", "sequence")),
        TensorSpec("token_type_ids", "int64", ("batch", "sequence")),
    )
)


def test_load_npz_npy_and_directory(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((3, 4)))  # float64 is cast to the model's float32
    feed = load_feed(tmp_path / "a.npz", SIG)
    assert feed["x"].dtype == np.float32 and feed["x"].shape == (3, 4)
    np.save(tmp_path / "b.npy", np.zeros((2, 4), np.float32))
    assert load_feed(tmp_path / "b.npy", SIG)["x"].shape == (2, 4)
    d = tmp_path / "dir"
    d.mkdir()
    np.savez(d / "1.npz", x=np.ones((2, 4), np.float32))
    np.savez(d / "2.npz", x=np.zeros((5, 4), np.float32))
    assert load_feed(d, SIG)["x"].shape == (7, 4)


def test_load_errors(tmp_path):
    np.savez(tmp_path / "wrong.npz", y=np.ones((3, 4), np.float32))
    with pytest.raises(InputError, match="unknown input name.*'y'.*in .*wrong.npz"):
        load_feed(tmp_path / "wrong.npz", SIG)
    np.savez(tmp_path / "shape.npz", x=np.ones((3, 5), np.float32))
    with pytest.raises(InputError, match="expected 4"):
        load_feed(tmp_path / "shape.npz", SIG)
    with pytest.raises(InputError, match="does not exist"):
        load_feed(tmp_path / "none.npz", SIG)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InputError, match="unsupported data file"):
        load_feed(tmp_path / "x.csv", SIG)


def test_batch_fixed_at_one_says_one_sample_per_file(tmp_path):
    # a recurrent state input fixed at batch 1 (silero VAD's h/c): 16 rows in one file cannot work
    sig = Signature(inputs=(TensorSpec("h", "float32", (1, 1, 4)),), outputs=())
    np.savez(tmp_path / "many.npz", h=np.zeros((16, 1, 4), np.float32))
    with pytest.raises(InputError, match="expected 1") as exc:
        load_feed(tmp_path / "many.npz", sig)
    assert "directory of .npz files holding one sample each" in str(exc.value)
    assert exc.value.input == "h"
    # other fixed sizes keep the plain message
    np.savez(tmp_path / "shape.npz", x=np.ones((3, 5), np.float32))
    with pytest.raises(InputError) as exc:
        load_feed(tmp_path / "shape.npz", SIG)
    assert "one sample each" not in str(exc.value)


def test_pickled_arrays_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="cannot read"):
        load_feed(tmp_path / "obj.npy", SIG)


def test_generate_feed_token_inputs_are_valid():
    feed = generate_feed(TOK, {"batch": 3, "sequence": 10}, vocab_size=50)
    assert (
        feed["input_ids"].shape == (3, 10)
        and feed["input_ids"].max() < 50
        and feed["input_ids"].min() >= 0
    )
    assert set(np.unique(feed["attention_mask"])) <= {0, 1} and feed["attention_mask"][0].all()
    assert not feed["token_type_ids"].any()


def test_split_batches():
    feed = {"x": np.arange(10 * 4, dtype=np.float32).reshape(10, 4)}
    sizes = [b["x"].shape[0] for b in split_batches(feed, 4)]
    assert sizes == [4, 4, 2]
