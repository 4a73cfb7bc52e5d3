"""The comparison report (s3ft.report): tables, plots and the self-contained HTML, from a metrics
file alone. The fixture tests/fixtures/compare_small.json is hand-made (2 seeds, 5 methods,
3 general benchmarks, one cross task, paired comparison, 20 log-probabilities per kind), so the
expected numbers below are worked out by hand:

general benchmarks (mmlu / hellaswag / winogrande), change from base (30 / 40 / 50):
  SFT  seed 1: 25 37 49 -> -5 -3 -1 (avg -3.0); seed 2: 27 36 47 -> -3 -4 -3 (avg -3.33)
       -> mean -3.17 ("-3.2"), sd 0.24 ("0.2"); per benchmark 26.0 (-4.0), 36.5 (-3.5), 48.0 (-2.0)
  S3FT seed 1: 29 39 50 -> avg -0.67; seed 2: 29 39 49 -> avg -1.0 -> mean -0.83 ("-0.8")
  SSR  avg -0.33 in both seeds -> "-0.3 ± 0.0";  SDFT -1.33 / -1.67 -> "-1.5 ± 0.2"
mix (n = 100): S3FT own 40/42 -> 41.0 ± 1.4, paraphrase 35/36 -> 35.5 ± 0.7, gold 25/22 -> 23.5 ± 2.1
in-domain (n = 100): base 40/40, S3FT 55/57 -> 56.0 ± 1.4, change +16.0 ± 1.4
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

import pytest

from s3ft.report import PLOT_NAMES, main, summarize, write_report

FIXTURE = Path(__file__).parent / "fixtures" / "compare_small.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _compare() -> dict:
    return json.loads(FIXTURE.read_text())


def _minimal() -> dict:
    """One seed, no general benchmarks, no cross task, no log-probabilities, no paired tests."""
    return {
        "task": "gsm8k",
        "model": "tiny",
        "judge": "math",
        "eval_split": "test",
        "methods": ["base", "sft", "s3ft"],
        "seeds": [1],
        "per_seed": {
            "1": {
                "mix": {
                    "sft": {"n": 10, "counts": {"self": 0, "paraphrase": 0, "gold": 10}},
                    "s3ft": {"n": 10, "counts": {"self": 5, "paraphrase": 3, "gold": 2}},
                },
                "in_domain": {
                    "base": {"k": 45, "n": 100, "accuracy": 45.0, "ci95": [35.0, 55.0]},
                    "sft": {"k": 48, "n": 100, "accuracy": 48.0, "ci95": [38.0, 58.0]},
                    "s3ft": {"k": 51, "n": 100},
                },
                "cross_task": {},
                "general": {},
            }
        },
    }


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5_000, (path, len(data))
    try:
        from PIL import Image
    except ImportError:  # matplotlib depends on Pillow, but do not insist
        return
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= 400 and im.size[1] >= 300, im.size


def _assert_self_contained(page: str) -> None:
    low = re.sub(r"data:image/png;base64,[a-z0-9+/=]+", "data:", page.lower())  # base64 may spell "http"
    assert "http" not in low  # no links, fonts, scripts or images from anywhere
    assert "<script" not in low and "<link" not in low and "@import" not in low and "url(" not in low
    assert "href=" not in low
    for m in re.finditer(r"src\s*=\s*[\"']?([^\"'\s>]*)", page, flags=re.I):
        assert m.group(1).startswith("data:image/png;base64,"), m.group(0)[:60]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("report")
    return out, write_report(_compare(), out)


def test_full_report_files_and_plots(full_report):
    out, paths = full_report
    assert paths["markdown"] == out / "report.md" and paths["markdown"].is_file()
    assert paths["html"] == out / "report.html" and paths["html"].is_file()
    for name in PLOT_NAMES:
        assert paths[name] == out / "plots" / f"{name}.png"
        _check_png(paths[name])


def test_full_report_markdown_numbers(full_report):
    out, paths = full_report
    md = paths["markdown"].read_text()
    # header
    assert "seeded subset of 200 questions per benchmark" in md
    assert "1234.5 s" in md and "learning_rate" in md and "q_proj, v_proj" in md
    # Table 3: mix, mean ± sd over the two seeds, counts per seed
    assert "| S3FT | 41.0 ± 1.4 | 35.5 ± 0.7 | 23.5 ± 2.1 | 100 |" in md
    assert "s1: 40 / 35 / 25<br>s2: 42 / 36 / 22" in md
    assert "| SFT | 0.0 ± 0.0 | 0.0 ± 0.0 | 100.0 ± 0.0 |" in md
    # Table 2: in-domain, mean ± sd, each seed with k/n and CI, change vs base
    s3ft_row = next(line for line in md.splitlines() if line.startswith("| S3FT | 56.0"))
    assert "56.0 ± 1.4" in s3ft_row and "s1: 55.0 (55/100)" in s3ft_row and "s2: 57.0 (57/100)" in s3ft_row
    assert "s1: [45.0, 65.0]" in s3ft_row and "+16.0 ± 1.4" in s3ft_row
    # cross task
    assert "gsm8k accuracy %" in md and "| SFT | 15.0 ± 1.4 | -5.0 ± 1.4 |" in md
    # Table 4: values with change from base, and the average change row
    assert "| mmlu (acc) | 200 | 30.0 | 26.0 (-4.0) | 29.5 (-0.5) | 28.0 (-2.0) | 29.0 (-1.0) |" in md
    assert "| winogrande (acc) | 200 | 50.0 | 48.0 (-2.0) | 50.0 (0.0) | 49.0 (-1.0) | 49.5 (-0.5) |" in md
    assert ("| **average change from base** |  | — | **-3.2 ± 0.2** | **-0.3 ± 0.0** | **-1.5 ± 0.2** "
            "| **-0.8 ± 0.2** |") in md
    assert "SFT -3.2, SSR -0.3, SDFT -1.5, S3FT -0.8" in md
    assert "3 benchmarks present for all methods (mmlu, hellaswag, winogrande)" in md
    # paired
    assert "| S3FT vs SFT | in_domain | 1 | 45 | 10 | 5 | 40 | +5.0 | [-2.0, 12.0] | 0.302 |" in md
    # Figure 2 analogue: medians computed here from the fixture's raw values
    lp = _compare()["logprob"]
    for kind, label in (("gold", "gold"), ("paraphrase", "paraphrase"), ("self", "own (self)")):
        med_pt = statistics.median(r["per_token"] for r in lp[kind])
        med_tot = statistics.median(r["total"] for r in lp[kind])
        assert f"| {label} | 20 | {med_pt:.2f} | {med_tot:.1f} |" in md
    # plots linked relatively, regeneration command present
    for name in PLOT_NAMES:
        assert f"(plots/{name}.png)" in md
    assert "python -m s3ft.report compare.json OUT" in md
    assert "skipped" not in md and "No " not in md.replace("No models", "")


def test_full_report_html_is_self_contained(full_report):
    out, paths = full_report
    page = paths["html"].read_text()
    _assert_self_contained(page)
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(PLOT_NAMES)
    embedded = {base64.b64decode(u) for u in uris}
    assert embedded == {paths[name].read_bytes() for name in PLOT_NAMES}
    # same numbers as the markdown, in tables
    assert "<table>" in page and "41.0 ± 1.4" in page and "Paired comparisons" in page
    assert '<span class="neg">-3.2</span> ± 0.2' in page
    assert '<span class="pos">+16.0</span> ± 1.4' in page


def test_summary_values():
    s = summarize(_compare())
    assert s["seeds"] == ["1", "2"]
    assert s["methods"] == ["base", "sft", "ssr", "sdft", "s3ft"]
    avg = s["general"]["avg_change"]
    assert avg["sft"]["mean"] == pytest.approx(-19 / 6)
    assert avg["s3ft"]["mean"] == pytest.approx(-5 / 6)
    assert avg["sft"]["per_seed"] == {"1": pytest.approx(-3.0), "2": pytest.approx(-10 / 3)}
    assert s["in_domain"]["s3ft"]["change"] == pytest.approx(16.0)
    assert s["mix"]["s3ft"]["percent"] == {"self": 41.0, "paraphrase": 35.5, "gold": 23.5}
    assert "base" not in s["mix"]


def test_squad_exact_match_and_f1_shown_with_their_intervals(tmp_path):
    c = _minimal()
    c["per_seed"]["1"]["in_domain"]["sft"].update({"em": 12.0, "em_ci95": [6.0, 19.0], "f1": 40.5, "f1_ci95": [33.1, 47.9]})
    c["per_seed"]["1"]["in_domain"]["base"].update({"em": 3.0, "f1": 20.0})  # recorded without intervals
    md = write_report(c, tmp_path)["markdown"].read_text()
    assert "| exact match % | F1 |" in md
    assert "| SFT | 48.0 | 48/100 | [38.0, 58.0] | +3.0 | 12.0 [6.0, 19.0] | 40.5 [33.1, 47.9] |" in md
    assert "| base | 45.0 | 45/100 | [35.0, 55.0] | — | 3.0 | 20.0 |" in md


def test_average_uses_only_benchmarks_every_method_has(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # tables only: faster
    compare = _compare()
    for seed in compare["per_seed"].values():  # a 4th benchmark for base and SFT only
        seed["general"]["base"]["truthfulqa_mc2"] = {"metric": "acc", "value": 40.0, "n": 200}
        seed["general"]["sft"]["truthfulqa_mc2"] = {"metric": "acc", "value": 20.0, "n": 200}
    s = summarize(compare)
    assert s["general"]["common"] == ["mmlu", "hellaswag", "winogrande"]
    assert s["general"]["avg_change"]["sft"]["mean"] == pytest.approx(-19 / 6)
    paths = write_report(compare, tmp_path)
    md = paths["markdown"].read_text()
    assert "| truthfulqa_mc2 (acc) * | 200 | 40.0 | 20.0 (-20.0) | — | — | — |" in md
    assert "not in the average (missing for some method or seed): truthfulqa_mc2" in md
    assert "**-3.2 ± 0.2**" in md


def test_minimal_report_builds(tmp_path):
    paths = write_report(_minimal(), tmp_path)
    md = paths["markdown"].read_text()
    # single seed: accuracy, k/n, CI, change; accuracy computed from k/n where missing
    assert "| base | 45.0 | 45/100 | [35.0, 55.0] | — |" in md
    assert "| SFT | 48.0 | 48/100 | [38.0, 58.0] | +3.0 |" in md
    assert "| S3FT | 51.0 | 51/100 | — | +6.0 |" in md
    # mix from counts only, with counts in parentheses
    assert "| S3FT | 50.0 (5) | 30.0 (3) | 20.0 (2) | 10 |" in md
    assert "Paper (S3FT, Mistral-7B-Instruct-v0.2, GSM8K): own 49.5 / paraphrase 42.1 / gold 8.4 %." in md
    # absent sections say so in one line
    assert "No general-benchmark results in compare.json" in md
    assert "No cross-task results" in md and "No log-probabilities" in md and "No paired comparisons" in md
    assert "general benchmarks | not recorded" in md and "No hyperparameters recorded." in md
    for name in ("in_domain_vs_drop", "general_changes", "logprob"):
        assert name not in paths
        assert not (tmp_path / "plots" / f"{name}.png").exists()
    page = paths["html"].read_text()
    _assert_self_contained(page)
    if "mix" in paths:  # matplotlib installed
        _check_png(paths["mix"])
        assert page.count('src="data:image/png;base64,') == 1


def test_rewrite_removes_stale_plots(full_report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(full_report[0], out)
    assert (out / "plots" / "logprob.png").exists()
    write_report(_minimal(), out)
    assert not (out / "plots" / "logprob.png").exists()
    assert not (out / "plots" / "general_changes.png").exists()
    assert (out / "plots" / "mix.png").exists()


def test_without_matplotlib_still_writes_tables(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    compare = _compare()
    paths = write_report(compare, tmp_path)
    assert set(paths) == {"markdown", "html"}
    md = paths["markdown"].read_text()
    assert "**-3.2 ± 0.2**" in md
    assert md.count("matplotlib is not installed") == len(PLOT_NAMES)
    _assert_self_contained(paths["html"].read_text())


def test_general_limit_none_means_full_sets(tmp_path):
    compare = _minimal()
    compare["general_limit"] = None
    compare["per_seed"]["1"].pop("mix")
    paths = write_report(compare, tmp_path)
    md = paths["markdown"].read_text()
    assert "general benchmarks | full sets" in md
    assert "No training-set mix in compare.json" in md


def test_cli(tmp_path, capsys):
    src = tmp_path / "compare.json"
    src.write_text(json.dumps(_minimal()))
    assert main([str(src), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json"), str(tmp_path / "out2")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_compute_time_orders_parts_and_sums():
    from s3ft.report import _compute_time

    s = _compute_time({"seed-10": 60, "tune": 1800, "seed-2": 7200, "shared": 3600})
    assert s.startswith("3.52 h: shared pass 1.00 h, tuning 30.0 min, seed-2 2.00 h, seed-10 1.0 min")
    assert _compute_time(None) == "not recorded"
