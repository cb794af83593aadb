"""`genq sim`'s settings file: a POSIX shell loads it with `set -a; . var/sim.env; set +a`."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from genq.simulators import write_env_file
from infra.embedded import free_port

SIMS = ("RUNNINGHUB", "HUNYUAN3D", "KIE", "CI", "SAMPLES", "WECHAT", "DOUYIN", "SMS", "WECHATPAY", "ALIPAY")
DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


def sourced(env_file: Path) -> dict[str, str]:
    """What `sh` exports after `set -a; . env_file; set +a`, read back by a child process."""
    script = f'set -a; . "$1"; set +a; exec "{sys.executable}" -c "{DUMP}"'
    command = ["sh", "-c", script, "sh", str(env_file)]
    done = subprocess.run(command, check=False, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded: dict[str, str] = json.loads(done.stdout)
    return loaded


def test_every_value_survives_sh_whatever_it_holds(tmp_path: Path) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAo\n-----END PRIVATE KEY-----\n"
    env = {
        "PRIVATE_KEY": pem,
        "QUOTES": 'it\'s "quoted"',
        "SHELLISH": "$HOME `id` $(id) ; rm -rf / # not run",
        "EMPTY": "",
        "URL": "http://127.0.0.1:8100",
    }
    env_file = tmp_path / "var" / "sim.env"

    write_env_file(env_file, env)

    loaded = sourced(env_file)
    assert {name: loaded.get(name) for name in env} == env
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


@pytest.fixture
def genq_sim(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """`genq sim` on free ports and its own var dir; (process, what it printed up to the settings line, var dir)."""
    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHATPAY_", "ALIPAY_"))}
    env |= {"VAR_DIR": str(var_dir), **{f"SIM_{name}_PORT": str(free_port()) for name in SIMS}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "genq.cli", "sim"], env=env, stdout=subprocess.PIPE, text=True, process_group=0
    )
    assert proc.stdout is not None
    printed = ""
    while "settings for genq" not in printed:
        line = proc.stdout.readline()
        assert line, f"genq sim stopped before naming its settings file: {printed}"
        printed += line
    yield proc, printed, var_dir
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def test_genq_sim_writes_settings_a_shell_loads_with_its_pem_keys_whole(
    genq_sim: tuple[subprocess.Popen[str], str, Path],
) -> None:
    _, printed, var_dir = genq_sim

    loaded = sourced(var_dir / "sim.env")

    key = load_pem_private_key(loaded["WECHATPAY_PRIVATE_KEY"].encode(), password=None)
    assert isinstance(key, RSAPrivateKey)
    assert loaded["ALIPAY_PUBLIC_KEY"].startswith("-----BEGIN PUBLIC KEY-----\n")
    assert loaded["KIE_BASE_URL"].startswith("http://127.0.0.1:")
    assert f"set -a; . {var_dir / 'sim.env'}; set +a" in printed
