"""The on-disk cache of the kernels is keyed on every kernel source, not only the kernel's own file
(kernels/_jit.py): a kernel that inlines a helper of another module must not keep its old machine code after
only the helper changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

import optiq_engine
from optiq_engine.kernels import _jit
from optiq_engine.kernels import journey_model as jm
from optiq_engine.kernels import journey_steps as js


def test_the_digest_covers_every_kernel_source_and_changes_with_any_of_them(tmp_path: Path) -> None:
    root = Path(optiq_engine.__file__).resolve().parent
    copy = tmp_path / "optiq_engine"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert _jit.sources_digest(copy) == _jit.SOURCES_DIGEST
    before = _jit.sources_digest(copy)
    helper = copy / "kernels" / "journey_model.py"  # its helpers are inlined into journey_steps' kernels
    helper.write_text(helper.read_text() + "\n# changed\n")
    assert _jit.sources_digest(copy) != before
    simulator = copy / "simulate" / "_kernels.py"
    helper.write_text(helper.read_text().removesuffix("\n# changed\n"))
    assert _jit.sources_digest(copy) == before
    simulator.write_text(simulator.read_text() + "\n")
    assert _jit.sources_digest(copy) != before
    (copy / "frames.py").write_text("# not a kernel source\n")
    simulator.write_text(simulator.read_text().removesuffix("\n"))
    assert _jit.sources_digest(copy) == before


def test_every_cached_kernel_is_keyed_on_the_digest() -> None:
    if not _jit._CACHE:
        return  # OPTIQ_NUMBA_CACHE=0: nothing is cached, nothing to key
    for kernel in (js.step_terms, js.node_stocks, jm.bucket, jm._ending_logit):
        stamp = kernel._cache._cache_file._source_stamp
        assert isinstance(stamp, tuple) and stamp[1] == _jit.SOURCES_DIGEST, kernel
    assert jm.bucket(np.int64(3)) == jm.bucket.py_func(3)  # still compiles, loads and runs
