"""The paper scripts' results folder: resumable CSV, parameters JSON, figure."""

from __future__ import annotations

import argparse
import json

from capc.learning.results_folder import ResultsFolder


def test_rows_resume_and_params(tmp_path):
    folder = ResultsFolder(tmp_path / "r", "demo", ["x", "y"])
    assert folder.rows() == [] and folder.done(lambda r: r["x"]) == set()
    with folder.appender() as append:
        append({"x": 1, "y": 2})
    # a second run (after a crash) appends without a second header
    again = ResultsFolder(tmp_path / "r", "demo", ["x", "y"])
    with again.appender() as append:
        append({"x": 3, "y": 4})
    assert again.rows() == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]
    assert again.done(lambda r: int(r["x"])) == {1, 3}
    path = again.write_params(argparse.Namespace(out="r", k=5), seeds={"models": 0})
    data = json.loads(path.read_text())
    assert data["parameters"]["k"] == 5 and data["seeds"] == {"models": 0}
    assert data["versions"]["python"] and "numpy" in data["versions"]


def test_figure_is_written_and_closed(tmp_path):
    import matplotlib.pyplot as plt

    folder = ResultsFolder(tmp_path, "fig", ["x"])
    with folder.figure("title") as ax:
        ax.plot([0, 1], [1, 0], label="line")
    assert folder.png.stat().st_size > 1000
    assert plt.get_fignums() == []


def test_summary_mean_std_per_configuration(tmp_path):
    from capc.learning.results_folder import summarise

    rows = [{"k": "a", "m": "0.95"}] * 3 + [{"k": "b", "m": "1"}, {"k": "b", "m": "3"}, {"k": "b", "m": ""}]
    assert summarise(rows, ["k"], ["m"]) == [{"k": "a", "n": 3, "m_mean": "0.95", "m_std": "0"},
                                             {"k": "b", "n": 3, "m_mean": "2", "m_std": "1"}]
    folder = ResultsFolder(tmp_path, "s", ["k", "m"])
    with folder.appender() as append:
        for r in rows:
            append(r)
    folder.write_summary(["k"], ["m"])
    text = folder.summary_csv.read_text().splitlines()
    assert text[0] == "k,n,m_mean,m_std" and text[2] == "b,3,2,1"
