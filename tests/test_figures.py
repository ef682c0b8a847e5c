"""The README's figures and docs/benchmarks.md are generated from results/ (mtsandbox figures)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from mtsandbox.cli import figures

ROOT = figures.ROOT


def _check(root: Path) -> int:
    return figures.cli(argparse.Namespace(check=True, root=str(root)))


def test_committed_docs_match_the_results_files() -> None:
    assert _check(ROOT) == 0, "README/docs figures are stale: run `mtsandbox figures`"


@pytest.fixture
def copy_root(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs/benchmarks.md", tmp_path / "docs/benchmarks.md")
    shutil.copytree(ROOT / "results/bench", tmp_path / "results/bench")
    ck = tmp_path / figures.TREEPUNCH_CKPT
    ck.mkdir(parents=True)
    shutil.copy(ROOT / figures.TREEPUNCH_CKPT / "eval.jsonl", ck / "eval.jsonl")
    (tmp_path / "results/world_model").mkdir(parents=True)
    shutil.copy(ROOT / "results/world_model/report.json",
                tmp_path / "results/world_model/report.json")
    for rel in (*(f for run in figures.MB_RUNS for f in (run.vs_ppo, run.target) if f),
                figures.WM_BUTTON, *figures.WM_TRACKING_LOOKS, figures.WM_TRACKING_PARTIAL,
                figures.WM_OPENLOOP_CONFIRM, figures.WM_COPYGATE_DEV, figures.WM_COPYGATE_CONFIRM,
                *(path for _, path in figures.WM_COPYGATE_ABLATIONS)):
        if (ROOT / rel).exists():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, tmp_path / rel)
    for exp in ("offswitch", "wireheading", *figures.CHECK_ROWS):
        if (ROOT / "results" / exp / "figures.json").exists():
            (tmp_path / "results" / exp).mkdir(parents=True)
            shutil.copy(ROOT / "results" / exp / "figures.json",
                        tmp_path / "results" / exp / "figures.json")
    return tmp_path


def test_a_changed_results_file_makes_the_docs_stale(copy_root: Path) -> None:
    assert _check(copy_root) == 0
    p = copy_root / "results/bench/env.json"
    env = json.loads(p.read_text())
    env["batched"]["env_steps_per_s_64x64_rgb"] = 123_457
    p.write_text(json.dumps(env))
    assert _check(copy_root) == 1
    assert figures.cli(argparse.Namespace(check=False, root=str(copy_root))) == 0
    assert "123,457" in (copy_root / "README.md").read_text()
    assert "123,457" in (copy_root / "docs/benchmarks.md").read_text()
    assert _check(copy_root) == 0


def test_a_missing_results_file_says_how_to_measure_it(copy_root: Path) -> None:
    (copy_root / "results/bench/scaling.json").unlink()
    text = figures.render(copy_root)[copy_root / "README.md"]
    assert "not measured (`mtsandbox bench scaling`)" in text


def test_fill_blocks_needs_the_marker() -> None:
    assert figures.fill_blocks("a <!-- figures:x -->old<!-- /figures:x --> b", {"x": "new"}) == \
        "a <!-- figures:x -->new<!-- /figures:x --> b"
    with pytest.raises(ValueError, match="figures:y"):
        figures.fill_blocks("no markers", {"y": "new"})


def test_check_rows_come_from_a_report_and_wait_for_both_conditions() -> None:
    s = {"mean": 0.8, "lo": 0.6, "hi": 0.9, "n_seeds": 3}
    c = {"mean": 0.3, "lo": 0.2, "hi": 0.5, "n_seeds": 3}
    check = {"condition": "K", "versus": "K_placebo", "metric": "compliance", "diff": 0.5,
             "diff_lo": 0.1, "diff_hi": 0.7, "verdict": "holds"}
    doc = {"conditions": {"K": {"compliance": s, "seeds": ["0", "1", "2"]},
                          "K_placebo": {"compliance": c, "seeds": ["0", "1"]}},
           "checks": [check]}
    what, fig = figures._check_row(doc, "K", "K_placebo", "compliance", "compliance")
    assert "seeds 3/2" in what and fig.startswith("0.80 [0.60, 0.90] / 0.30 [0.20, 0.50]")
    assert fig.endswith("+0.50 [+0.10, +0.70]: holds")
    del doc["conditions"]["K_placebo"]
    assert figures._check_row(doc, "K", "K_placebo", "compliance", "compliance") is None
    assert figures._check_row({}, "K", "K_placebo", "compliance", "compliance") is None
