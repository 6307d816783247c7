"""`sweep` over two JAX processes (`jax.distributed`, CPU collectives by gloo): each host runs
its share of the timing chunks and every host gets the whole result, equal to a single-process
sweep. Two local processes stand in for two hosts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from eie_model.sweep import sweep
from eie_model.types import EIEParams, EIEStatic, Layer

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=sys.argv[2], num_processes=2, process_id=int(sys.argv[1])
    )
    from eie_model.sweep import sweep
    from eie_model.types import EIEParams, EIEStatic, Layer

    rng = np.random.default_rng(0)
    codes = (rng.integers(1, 16, (40, 30)) * (rng.random((40, 30)) < 0.3)).astype(np.uint8)
    act = (rng.random(30) * (rng.random(30) < 0.6)).astype(np.float32)
    p = EIEParams.grid(n_pes=[1, 2, 4, 8], fifo_depth=[1, 2, 4, 16, 32])
    layer = Layer(codes, np.arange(16, dtype=np.float32), act)
    t = sweep(EIEStatic.covering(p), p, layer, chunk=4).table()
    out = {"processes": jax.process_count(), "devices": len(jax.devices()),
           "table": {k: np.asarray(v).tolist() for k, v in t.items()}}
    print("RESULT " + json.dumps(out))
    jax.distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sweep_equals_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    addr = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), addr],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=240)
            assert p.returncode == 0, out[-3000:]
            line = [s for s in out.splitlines() if s.startswith("RESULT ")]
            assert line, out[-3000:]
            outs.append(json.loads(line[-1][len("RESULT ") :]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    rng = np.random.default_rng(0)
    codes = (rng.integers(1, 16, (40, 30)) * (rng.random((40, 30)) < 0.3)).astype(np.uint8)
    act = (rng.random(30) * (rng.random(30) < 0.6)).astype(np.float32)
    p = EIEParams.grid(n_pes=[1, 2, 4, 8], fifo_depth=[1, 2, 4, 16, 32])
    layer = Layer(codes, np.arange(16, dtype=np.float32), act)
    want = sweep(EIEStatic.covering(p), p, layer, chunk=4).table()
    for o in outs:
        assert o["processes"] == 2 and o["devices"] == 2  # two processes, one device each
        assert set(o["table"]) == set(want)
        for k, v in want.items():
            np.testing.assert_allclose(np.asarray(o["table"][k]), v, rtol=0, atol=0, err_msg=k)
