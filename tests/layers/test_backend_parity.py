"""The layers give the same numbers under the TensorFlow and JAX Keras backends."""

import os
import pathlib
import subprocess
import sys

import numpy as np

SCRIPT = pathlib.Path(__file__).with_name("layer_backend_outputs.py")
REPO_ROOT = SCRIPT.parents[2]
# JAX compiles every eager op with XLA; for these tiny ops the optimisation passes cost
# far more than they save (about 25 s -> 7 s on a busy 2-core machine).
FAST_XLA_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _start(backend, output):
    environment = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {FAST_XLA_COMPILE}",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(output)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_tensorflow_and_jax_backends_agree(tmp_path):
    runs = {backend: _start(backend, tmp_path / f"{backend}.npz") for backend in ("tensorflow", "jax")}
    for backend, process in runs.items():
        log, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"{backend} run failed:\n{log[-3000:]}"

    tensorflow = np.load(tmp_path / "tensorflow.npz")
    jax = np.load(tmp_path / "jax.npz")
    assert str(tensorflow["backend"]) == "tensorflow" and str(jax["backend"]) == "jax"
    assert set(tensorflow.files) == set(jax.files)
    assert len(tensorflow.files) == 14  # backend name + 13 arrays
    for name in tensorflow.files:
        if name != "backend":
            np.testing.assert_allclose(jax[name], tensorflow[name], atol=1e-5, err_msg=name)
