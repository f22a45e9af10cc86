"""The result dataclasses and the final table."""

import json

from capc.launcher.results import ExperimentResult, PrivacySummary, QueryRow, format_table


def test_table_lists_labels_truth_steps_and_privacy():
    rows = [QueryRow(10, 3, 3, {"1a": 2.0, "1b": 1.0, "3": 0.5}),
            QueryRow(11, 4, 9, {"1a": 4.0, "1b": 1.0, "3": 0.5}),
            QueryRow(12, None, 1, {"1a": 3.0})]
    privacy = PrivacySummary(qp_id=0, epsilon=2.5, delta=1e-5, budget_eps=8.0, answered=2,
                             queries=3, note="threshold T=5, sigma_T=4, sigma_G=2")
    result = ExperimentResult(rows, privacy, {"total": 12.0})
    table = format_table(result, "run-1")
    lines = table.splitlines()
    assert "CKKS encryption + garbled-circuit 2PC" in lines[0] and "run-1" in lines[0]
    assert lines[1].split() == ["query", "label", "true", "match", "1a", "s", "1b", "s", "3",
                                "s", "total", "s"]
    assert lines[2].split() == ["10", "3", "3", "yes", "2.000", "1.000", "0.500", "3.500"]
    assert lines[3].split()[:4] == ["11", "4", "9", "no"]
    assert lines[4].split() == ["12", "-", "1", "not", "answered", "3.000", "-", "-", "3.000"]
    assert "answered 2/3; correct 1/2 (50.0%)" in table
    assert "mean seconds per step: 1a 3.000, 1b 1.000, 3 0.500" in table
    assert "epsilon = 2.5 at delta = 1e-05 (budget 8; 2/3 answered; data-independent" in table
    assert "threshold T=5" in table and "totals: total 12.000 s" in table
    assert result.answered == 2 and result.correct == 1
    data = result.to_json()
    json.dumps(data)
    assert data["rows"][2]["label"] is None and data["privacy"]["epsilon"] == 2.5


def test_plaintext_and_empty_results_are_labelled():
    table = format_table(ExperimentResult([], None, plaintext=True))
    assert "PLAINTEXT SIMULATION (--cpu): nothing was encrypted" in table
    assert "answered 0/0" in table and "privacy spent: not reported" in table
    unknown = format_table(ExperimentResult([QueryRow(0, 2, None)], None))
    assert unknown.splitlines()[2].split() == ["0", "2", "?", "?", "-"]


def test_progress_bar_helper(run_dir):
    import io

    from capc.launcher.launcher import Launcher

    with Launcher(run_dir, out=io.StringIO()) as launcher:
        assert launcher.progress(3).disable is True      # stderr is not a terminal here
        bar = launcher.progress(3, disable=False)
        bar.update(2)
        assert bar.total == 3 and bar.n == 2
        bar.close()
