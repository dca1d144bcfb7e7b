"""Reading user files without running their code: skvmf._torch.files."""

import io
import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skvmf._torch.files import RestrictedUnpickler, read_pickle, read_torch

# A CIFAR-10 batch as Python 2 and numpy 1 wrote it (cPickle protocol 2):
# {'data': arange(6, uint8).reshape(2, 3), 'labels': [0, 1]}, opcode by opcode.
PY2_BATCH = (
    b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02"
    b"cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02K\x03\x86"
    b"cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff"
    b"\xffJ\xff\xff\xff\xffK\x00tb\x89U\x06\x00\x01\x02\x03\x04\x05tb"
    b"U\x06labelsq\x07]q\x08(K\x00K\x01eu."
)


class _System:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_a_python2_cifar_batch_reads_as_numpy_wrote_it(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(PY2_BATCH)
    entry = read_pickle(path)
    assert set(entry) == {"data", "labels"} and entry["labels"] == [0, 1]
    np.testing.assert_array_equal(
        entry["data"], np.arange(6, dtype=np.uint8).reshape(2, 3)
    )
    assert entry["data"].dtype == np.uint8


@settings(max_examples=30, deadline=None)
@given(
    protocol=st.integers(0, pickle.HIGHEST_PROTOCOL),
    n=st.integers(0, 5),
    dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.float64]),
    fortran=st.booleans(),
)
def test_every_protocol_reads_like_pickle(
    tmp_path_factory, protocol, n, dtype, fortran
):
    rng = np.random.default_rng(n)
    data = rng.integers(0, 256, size=(n, 12)).astype(dtype)
    data = np.asfortranarray(data) if fortran else data
    entry = {
        "data": data,
        "labels": rng.integers(0, 10, n).tolist(),
        "batch_label": "training batch 1 of 5",
        "filenames": [f"img_{i}.png" for i in range(n)],
        "raw": b"\x00\xff",
        "extra": (1.5, None, True, {3, 4}, frozenset({5}), bytearray(b"ab")),
    }
    path = tmp_path_factory.mktemp("p") / "batch"
    path.write_bytes(pickle.dumps(entry, protocol=protocol))
    got = read_pickle(path)
    want = pickle.loads(path.read_bytes())  # the reference: plain pickle
    np.testing.assert_array_equal(got["data"], want["data"])
    assert got["data"].dtype == want["data"].dtype
    assert {k: v for k, v in got.items() if k != "data"} == {
        k: v for k, v in want.items() if k != "data"
    }


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("payload", [_System, _Exec])
def test_a_crafted_pickle_runs_no_code(tmp_path, protocol, payload):
    marker = tmp_path / "marker"
    path = tmp_path / "batches.meta"
    path.write_bytes(pickle.dumps({"label_names": payload(marker)}, protocol=protocol))
    with pytest.raises(ValueError, match="batches.meta") as info:
        read_pickle(path, what="CIFAR-10 metadata file")
    assert not marker.exists()
    message = str(info.value)
    assert "\n" not in message and "refused without running it" in message
    assert ("system" in message) or ("exec" in message)


@pytest.mark.parametrize(
    "module, name",
    [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("__builtin__", "exec"),
        ("subprocess", "Popen"),
        ("numpy", "load"),
        ("numpy.lib.npyio", "load"),
        ("numpy", "frompyfunc"),
        ("copyreg", "_reconstructor"),
        ("torch", "load"),
    ],
)
def test_only_the_format_s_globals_resolve(module, name):
    unpickler = RestrictedUnpickler(io.BytesIO(b""))
    with pytest.raises(pickle.UnpicklingError, match=f"{module}.{name}"):
        unpickler.find_class(module, name)
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray


@pytest.mark.parametrize(
    "content",
    [
        b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.",  # bytes(10**9)
        b"\x80\x02c__builtin__\nbytearray\nJ\x00\xca\x9a;\x85R.",
        # numpy's _reconstruct(ndarray, (10**9,), b"b"): an array before its data
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"J\x00\xca\x9a;\x85U\x01b\x87R.",
    ],
)
def test_no_allocation_of_a_size_the_file_names(tmp_path, content):
    path = tmp_path / "big"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="refused without running it"):
        read_pickle(path)


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, len(PY2_BATCH) - 1))
def test_every_truncation_is_one_line_naming_the_file(tmp_path_factory, cut):
    path = tmp_path_factory.mktemp("t") / "data_batch_2"
    path.write_bytes(PY2_BATCH[:cut])
    with pytest.raises(ValueError, match="data_batch_2") as info:
        read_pickle(path, what="CIFAR-10 batch")
    assert "\n" not in str(info.value)
    assert "corrupt or truncated" in str(info.value)


@settings(max_examples=50, deadline=None)
@given(content=st.binary(max_size=48))
def test_arbitrary_bytes_give_data_or_a_value_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("b") / "noise"
    path.write_bytes(content)
    try:
        read_pickle(path)
    except ValueError as exc:  # never another exception type
        assert "noise" in str(exc) and "\n" not in str(exc)


def test_missing_and_folder(tmp_path):
    with pytest.raises(ValueError, match="'.*nothing' does not exist"):
        read_pickle(tmp_path / "nothing")
    with pytest.raises(ValueError, match="is a folder, not a file"):
        read_pickle(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        read_torch(tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match="is a folder, not a file"):
        read_torch(tmp_path)


def test_torch_files(tmp_path):
    weights = {"w": torch.arange(3.0), "meta": {"epoch": 2}}
    torch.save(weights, tmp_path / "good.pt")
    got = read_torch(tmp_path / "good.pt")
    assert torch.equal(got["w"], weights["w"]) and got["meta"] == {"epoch": 2}
    with open(tmp_path / "good.pt", "rb") as f:
        assert torch.equal(read_torch(f)["w"], weights["w"])

    raw = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "noise.pt").write_bytes(b"hello world")
    marker = tmp_path / "marker"
    torch.save({"w": torch.zeros(1), "x": _System(marker)}, tmp_path / "crafted.pt")
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"x": _Exec(marker)}, f)
    for name, words in [
        ("cut.pt", "corrupt or truncated"),
        ("noise.pt", "not a torch checkpoint or is corrupt"),
        ("crafted.pt", "not plain weights"),
        ("plain.pkl", "not plain weights"),
    ]:
        with pytest.raises(ValueError, match=name) as info:
            read_torch(tmp_path / name)
        message = str(info.value)
        assert words in message and "\n" not in message, message
        assert "weights_only=False" not in message  # never suggest running code
    assert not marker.exists()
