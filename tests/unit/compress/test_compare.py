"""Comparison tables and figures across compression methods (compress/compare.py)."""

import json

import numpy as np
import pandas as pd
import pytest

from quantscan.compress import compare
from quantscan.errors import InputFormatError


def png(path):
    return path.read_bytes()[:4] == b"\x89PNG"


def test_pareto_front_on_a_hand_made_table():
    #            size  acc   on the front?
    points = [
        (100, 0.90),  # 0 yes: the smallest
        (200, 0.85),  # 1 no: bigger and worse than 0
        (300, 0.95),  # 2 yes
        (300, 0.93),  # 3 no: same size as 2, worse
        (400, 0.95),  # 4 no: bigger, same accuracy as 2
        (50, 0.60),  # 5 yes: the very smallest
        (1000, 0.99),  # 6 yes: the most accurate
        (100, 0.90),  # 7 no: a duplicate of 0 (only the first is marked)
        (np.nan, 0.99),  # 8 no: no size
    ]
    size, acc = zip(*points, strict=True)
    mask = compare.pareto_front(size, acc)
    assert np.flatnonzero(mask).tolist() == [0, 2, 5, 6]
    assert compare.pareto_front([], []).tolist() == []


def test_family_of_method_names():
    assert compare.family_of("fp32") == "fp32"
    assert compare.family_of("int8") == "int8"
    assert compare.family_of("int8_entropy") == "int8"
    assert compare.family_of("attq_hessian_0") == "attq"  # not ttq
    assert compare.family_of("ttq") == "ttq"
    assert compare.family_of("p_then_q_iter_g1.5") == "p_then_q_iter"
    assert compare.family_of("q_then_p_iter") == "q_then_p_iter"
    assert compare.family_of("uniform_scan_2bit") == "uniform"
    assert compare.family_of("mixed_table6_po2") == "mixed"
    assert compare.family_of("custom_thing") == "custom"


def write_job(tmp_path, job, rows, primary):
    d = tmp_path / job
    d.mkdir()
    pd.DataFrame(rows).to_csv(d / "rows.tsv", sep="\t", index=False)
    (d / "metrics.json").write_text(
        json.dumps({"scenario": rows[0]["scenario"], "method": primary, "accuracy": 0.5})
    )
    return {"rows": d / "rows.tsv", "metrics": d / "metrics.json", "job": job}


@pytest.fixture
def table(tmp_path):
    fp32 = tmp_path / "fp32.json"
    fp32.write_text(
        json.dumps(
            {
                "scenario": "s1",
                "method": "fp32",
                "accuracy": 0.95,
                "model_bits": 310400,
                "file_bytes": 40000,
                "confusion_matrix": {"rows_true_cols_pred": [[1]]},
            }
        )
    )
    sched = [
        {"scenario": "s1", "method": f"q_then_p_iter_g{g}", "accuracy": a, "density": d,
         "model_bits": b, "file_bytes": b // 8}
        for g, a, d, b in [(0.5, 0.94, 0.6, 60000), (1.0, 0.93, 0.35, 40000), (1.5, 0.8, 0.2, 30000)]
    ]  # fmt: skip
    p_then = [
        {"scenario": "s1", "method": "p_then_q_epochs_g1.0", "accuracy": 0.9, "density": 0.4,
         "model_bits": 45000, "file_bytes": 5600},
    ]  # fmt: skip
    int8 = [
        {"scenario": "s1", "method": "int8", "accuracy": 0.95, "density": 0.99,
         "model_bits": 81536, "file_bytes": 31794, "speedup_vs_torch_fp32": 5.0},
    ]  # fmt: skip
    jobs = [
        {**write_job(tmp_path, "q_then_p_iter", sched, "q_then_p_iter_g1.0"), "type": None},
        {**write_job(tmp_path, "pq", p_then, "p_then_q_epochs_g1.0"), "type": "p_then_q_epochs"},
        {**write_job(tmp_path, "int8", int8, "int8"), "type": "int8"},
    ]
    return compare.variants_table([fp32], jobs)


def test_variants_table_has_every_variant_and_primaries(table, tmp_path):
    assert len(table) == 1 + 3 + 1 + 1
    assert list(table.columns[:6]) == ["scenario", "family", "job", "method", "primary", "accuracy"]
    fam = dict(zip(table.method, table.family, strict=True))
    assert fam["fp32"] == "fp32" and fam["q_then_p_iter_g0.5"] == "q_then_p_iter"
    assert fam["p_then_q_epochs_g1.0"] == "p_then_q_epochs" and fam["int8"] == "int8"
    primaries = sorted(table.method[table.primary.astype(bool)])
    assert primaries == ["fp32", "int8", "p_then_q_epochs_g1.0", "q_then_p_iter_g1.0"]
    assert "confusion_matrix" not in table.columns  # nested fields stay in metrics.json
    compare.write_variants(table, tmp_path / "v.tsv")
    back = pd.read_csv(tmp_path / "v.tsv", sep="\t")
    assert len(back) == 6 and back.speedup_vs_torch_fp32.notna().sum() == 1


def test_pareto_and_density_plots(table, tmp_path):
    compare.pareto(table, tmp_path / "pareto.png", "sweeps")
    compare.density(table, tmp_path / "density.png", "sweeps")
    assert png(tmp_path / "pareto.png") and png(tmp_path / "density.png")
    # two scenarios: two panels; model_bits when a row lacks file_bytes
    two = pd.concat([table, table.assign(scenario="s2")], ignore_index=True)
    two.loc[two.method == "int8", "file_bytes"] = np.nan
    assert compare.size_column(two) == "model_bits"
    compare.pareto(two, tmp_path / "pareto2.png", "two scenarios")
    assert png(tmp_path / "pareto2.png")


def test_density_lines_join_one_gamma_jobs_of_a_schedule():
    def row(job, gamma, density, bits=8):
        return {"scenario": "s1", "family": "q_then_p_iter", "job": job,
                "method": f"{job}_g{gamma}", "accuracy": 0.9, "density": density,
                "bits_per_layer": f"conv={bits}/32"}  # fmt: skip

    # gammas split over jobs (one method per gamma): one line, ordered by density
    split = pd.DataFrame([row("q_then_p_iter_g15", 1.5, 0.1), row("q_then_p_iter_g10", 1.0, 0.3)])
    lines = compare.schedule_lines(split)
    assert [(label, len(g)) for label, _, g in lines] == [("q_then_p_iter", 2)]
    assert lines[0][2].density.tolist() == [0.1, 0.3]
    # the same schedule at another bit width: its own line, labelled with its jobs
    four = pd.DataFrame([*split.to_dict("records"), row("qp4", 1.0, 0.3, bits=4)])
    labels = [label for label, _, _ in compare.schedule_lines(four)]
    assert labels == ["q_then_p_iter (q_then_p_iter_g15, q_then_p_iter_g10)", "q_then_p_iter (qp4)"]
    # without bit widths (older rows): one line per job
    assert len(compare.schedule_lines(split.drop(columns="bits_per_layer"))) == 2
    assert compare.schedule_lines(split.iloc[:0]) == []


def test_plots_without_compressed_methods_still_draw(tmp_path):
    fp32 = tmp_path / "fp32.json"
    fp32.write_text(json.dumps({"scenario": "viral", "method": "fp32", "accuracy": 0.9,
                                "model_bits": 1000, "file_bytes": 200}))  # fmt: skip
    table = compare.variants_table([fp32], [])
    assert table.method.tolist() == ["fp32"] and "density" not in table.columns
    compare.pareto(table, tmp_path / "p.png", "viral")
    compare.density(table, tmp_path / "d.png", "viral")  # a note, not a failure
    assert png(tmp_path / "p.png") and png(tmp_path / "d.png")
    empty = compare.variants_table([], [])
    compare.pareto(empty, tmp_path / "e.png", "nothing")
    compare.density(empty, tmp_path / "e2.png", "nothing")
    assert png(tmp_path / "e.png") and png(tmp_path / "e2.png")


def test_unreadable_rows_name_the_file(tmp_path):
    bad = tmp_path / "rows.tsv"
    bad.write_text("method\taccuracy\nx\t0.5\n")
    with pytest.raises(InputFormatError, match="rows.tsv: rows table lacks column\\(s\\) scenario"):
        compare.variants_table([], [{"rows": bad, "job": "x"}])


def test_every_method_family_has_its_own_colour_in_the_plots():
    styles = compare._styles(list(compare.FAMILIES) + ["a_new_method"])
    colours = [
        tuple(s["color"]) if not isinstance(s["color"], str) else s["color"]
        for s in styles.values()
    ]
    assert len(set(colours)) == len(styles) == len(compare.FAMILIES) + 1
    assert (
        compare._size_label(1500) == "1.5 kB" and compare._size_label(2e6, unit="bit") == "2 Mbit"
    )
