"""`fraudops rules backtest` and `check`: figures against a direct computation on the frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fraudops.cli import app
from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.rules import RulesError, parse_rule_set
from fraudops.rules.backtest import Scores, backtest

RULES = """
version: bt-1
lists: {deny_accounts: account}
rules:
  - {id: big, owner: o, description: d, action: review, when: {field: amount, gt: 300}}
  - {id: online-big, owner: o, description: d, action: block,
     when: {all: [{field: channel, eq: online}, {field: amount, gt: 600}]}}
  - {id: deny, owner: o, description: d, action: block,
     when: {field: account_id, in_list: deny_accounts}}
"""


@pytest.fixture(scope="module")
def frame():
    return tabular.normalize(generate(GeneratorConfig(rows=3000, seed=5)))


def expected(flagged: np.ndarray, frame) -> tuple[int, int, float]:
    fraud = frame["label"].to_numpy() == 1
    return int(flagged.sum()), int((flagged & fraud).sum()), \
        round(float(frame["amount"].to_numpy()[flagged & fraud].sum()), 2)


def test_per_rule_and_overall_figures_match_the_frame(frame) -> None:
    account = str(frame["account_id"].iloc[0])
    report = backtest(parse_rule_set(RULES), frame, lists={"deny_accounts": [account]})
    amount, online = frame["amount"].to_numpy(), frame["channel"].to_numpy() == "online"
    denied = frame["account_id"].to_numpy() == account
    lines = {line.name: line for line in report.rules + report.overall}
    for name, flagged in (("big", amount > 300), ("online-big", online & (amount > 600)),
                          ("deny", denied), ("rules alone", (amount > 300) | denied)):
        line = lines[name]
        assert (line.alerts, line.true_positives, line.value_caught) == expected(flagged, frame)
        assert line.recall == round(line.true_positives / report.frauds, 4)
    assert report.frauds == int((frame["label"] == 1).sum()) and report.rows == len(frame)


def test_the_model_beside_the_rules(frame) -> None:
    rng = np.random.default_rng(0)
    p = rng.random(len(frame))
    decision = np.where(p > 0.9, "block", "approve")
    report = backtest(parse_rule_set(RULES), frame,
                      scores=Scores(p, np.zeros(len(frame)), decision))
    lines = {line.name: line for line in report.overall}
    amount = frame["amount"].to_numpy()
    assert lines["model alone"].alerts == expected(p > 0.9, frame)[0]
    assert (lines["model + rules"].alerts, lines["model + rules"].true_positives) == \
        expected((p > 0.9) | (amount > 300), frame)[:2]


def test_undeclared_lists_are_refused(frame) -> None:
    with pytest.raises(RulesError, match="not declared by the rule set: other"):
        backtest(parse_rule_set(RULES), frame, lists={"other": ["x"]})


def test_the_cli(tmp_path: Path, frame) -> None:
    good, bad = tmp_path / "rules.yaml", tmp_path / "bad.yaml"
    good.write_text(RULES)
    bad.write_text(RULES.replace("action: review", "action: reveiw"))
    data = tabular.write(frame.head(500), tmp_path / "data.parquet")
    runner = CliRunner()
    checked = runner.invoke(app, ["rules", "check", str(good)])
    refused = runner.invoke(app, ["rules", "check", str(bad)])
    replayed = runner.invoke(app, ["rules", "backtest", str(good), "--data", str(data),
                                   "--out", str(tmp_path / "report.json")])
    assert checked.exit_code == 0 and "rule set bt-1 is valid (3 enabled rules" in checked.output
    assert refused.exit_code == 1 and "rule 'big': action: unknown action 'reveiw'" in \
        refused.output
    assert replayed.exit_code == 0, replayed.output
    assert "rules alone" in replayed.output and (tmp_path / "report.json").exists()
