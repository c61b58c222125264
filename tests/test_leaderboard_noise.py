"""The leaderboard read with its noise: public differences against the public subset's sampling noise, the
public share remembered per workspace, and the final two submissions with their reasons."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.leaderboard.noise import PairVerdict, TrustedRows, final_picks, pair_verdicts, public_noise
from test_stack_cli import two_runs  # noqa: F401  (fixture: imported runs r0, r1 with OOF)


def ens(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})


def _rows(n: int = 2000, seed: int = 0) -> tuple[TrustedRows, np.ndarray]:
    rng = np.random.default_rng(seed)
    fake = (rng.random(n) < 0.5).astype(float)
    y = np.stack([fake, 1 - fake], axis=1)
    signal = fake + rng.normal(0, 0.7, n)
    return TrustedRows(pd.Series([f"r{i}" for i in range(n)]), y, None, "testlike"), signal


def _probs(signal: np.ndarray, noise: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-3 * (signal + noise - 0.5)))
    return np.stack([p, 1 - p], axis=1)


def test_public_noise_is_zero_for_one_prediction_and_shrinks_as_the_public_part_grows():
    rows, signal = _rows()
    rng = np.random.default_rng(1)
    a, b = _probs(signal, rng.normal(0, 0.5, len(signal))), _probs(signal, rng.normal(0, 0.5, len(signal)))
    assert public_noise(rows, a, a, 500) == 0.0
    small, large = public_noise(rows, a, b, 100), public_noise(rows, a, b, 1600)
    assert 2.5 < small / large < 6  # a sampling noise: about 1/sqrt(public rows), 4x for 16x the rows
    assert public_noise(rows, a, a * 0.98 + 0.01, 100) < small  # two nearly equal submissions: little noise


def test_a_public_order_against_trusted_cv_beyond_the_noise_is_a_warning():
    rows, signal = _rows()
    rng = np.random.default_rng(2)
    good, bad = _probs(signal, rng.normal(0, 0.2, len(signal))), _probs(signal, rng.normal(0, 1.5, len(signal)))
    preds = {"good": good, "bad": bad}
    frame = pd.DataFrame({"name": ["good", "bad"], "public": [0.30, 0.10], "cv_testlike": [0.15, 0.25]})
    neighbours, disagree = pair_verdicts(frame, preds, rows, 400, "cv_testlike")
    assert [(v.better, v.worse) for v in neighbours] == [("bad", "good")]
    assert neighbours[0].beyond and disagree and "trusted CV the other way" in disagree[0].warning()
    close = frame.assign(public=[0.2001, 0.2])
    neighbours, disagree = pair_verdicts(close, preds, rows, 400, "cv_testlike")
    assert not neighbours[0].beyond and not disagree
    assert "the leaderboard cannot tell them apart" in neighbours[0].sentence(400, 800)
    assert PairVerdict("a", "b", 0.5, 0.1, True).warning() is None  # public and CV agree: nothing to warn


def test_the_hedge_is_the_one_within_the_noise_that_errs_least_like_the_best():
    rows, signal = _rows()
    rng = np.random.default_rng(3)
    own = rng.normal(0, 0.3, len(signal))
    best = _probs(signal, own)
    twin = _probs(signal, own + rng.normal(0, 0.05, len(signal)))  # within the noise, errs like the best
    other = _probs(signal, rng.normal(0, 0.3, len(signal)))  # within the noise, errs its own way
    poor = _probs(signal, rng.normal(0, 3.0, len(signal)))  # credibly worse
    preds = {"best": best, "twin": twin, "other": other, "poor": poor}
    picks = final_picks(["best", "twin", "other", "poor"], preds, rows, k=2)
    assert [p.name for p in picks] == ["best", "other"] and "errs least like" in picks[1].reason
    alone = final_picks(["best", "poor"], {"best": best, "poor": poor}, rows, k=2)
    assert [p.name for p in alone] == ["best", "poor"] and "nothing else is within the noise" in alone[1].reason


def test_lb_remembers_the_public_share_and_refuses_a_bad_one(two_runs, workspace):  # noqa: F811
    bad = ens("lb", "--public-share", "1.5")
    assert bad.exit_code == 1 and bad.output.startswith("Error: --public-share must be a fraction")
    assert "public_share" not in (workspace / "ens.toml").read_text()
    assert ens("lb").output.startswith("Error: give a SUBMISSION")
    missing = ens("lb", "nope", "--public", "0.2", "--public-share", "0.4")
    assert missing.exit_code == 1 and "public_share" not in (workspace / "ens.toml").read_text()  # nothing half done
    result = ens("lb", "--public-share", "0.4")
    assert result.exit_code == 0 and 'public_share = "0.4"' in (workspace / "ens.toml").read_text()


def test_the_board_reads_public_scores_with_their_noise_and_proposes_two_finals(two_runs, workspace):  # noqa: F811
    for args in (["--method", "auto", "--name", "au"], ["--method", "logit", "--name", "lg"],
                 ["--method", "mean", "--name", "mn"]):
        assert ens("stack", "r0", "r1", *args).exit_code == 0
    assert (workspace / "submissions" / "lg.rows.parquet").is_file()
    for name, score in (("au", 0.30), ("lg", 0.25), ("mn", 0.26)):
        assert ens("lb", name, "--public", score).exit_code == 0
    said = " ".join(ens("board").output.split())
    assert "pub: tell ens the public leaderboard's share of the test (`ens lb --public-share 0.5`)" in said
    assert ens("lb", "--public-share", "0.5").exit_code == 0
    out = ens("board", "--final", "2").output
    said = " ".join(out.split())
    assert "pub lg vs mn: 0.0100 apart" in said and "6 of 12 test rows public" in said
    chosen = json.loads((workspace / "submissions" / "au.json").read_text())["recipe"]["decision"]["chosen"]
    run = chosen.removeprefix("run:")
    assert f"final 1: {run} (submitted as au): the decision rule's pick" in said
    assert "final 2: " in said
    notes = json.loads(ens("board", "--final", "2", "--format", "json").output)["notes"]
    assert any(n.startswith("final 2: ") for n in notes)
    assert ens("board", "--final", "0").output.startswith("Error: --final must be 1 or more")
