"""Rule evaluation in the consumer's hot path: microseconds per transaction at 20 rules.

Target (issue 17): <= 10 us per transaction at 20 rules. Builds a 20-rule set (the example's
eight and twelve more: amounts, channels, features, scores, lists; four lists, the account
deny list with `--list-size` entries), computes realistic feature sequences with the shared
online feature implementation over generated transactions, scores them with random numbers,
then times `fraudops.rules.decide_batch` on batches (their last rows: the scored
transactions' features) of `--batch` (what `_decide` adds: the
feature rows, the evaluator, the precedence, the outcome records), best of `--repeat` runs.

    python benchmarks/bench_rules.py                      # 20 rules, 50,000 transactions
    python benchmarks/bench_rules.py --smoke              # tiny sizes: checks the script runs
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from fraudops.data import tabular
from fraudops.features import OnlineFeatureState, build_spec
from fraudops.rules import RuleEngine, compile_rule_set, decide_batch, parse_rule_set
from fraudops.schema import APPROVE, BLOCK, REVIEW

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rules.yaml"
SMOKE = {"rows": 2_000, "repeat": 1, "list_size": 100}


def _rule(rule_id: str, action: str, when: dict) -> dict:
    return {"id": rule_id, "owner": "bench", "description": "benchmark rule", "action": action,
            "when": when}


def twenty_rules() -> str:
    """The example rule set plus twelve rules of every kind of condition (20 in all)."""
    document = yaml.safe_load(EXAMPLE.read_text())
    extra = [
        _rule("huge-amount", "review", {"field": "amount", "ge": 9000}),
        _rule("atm-night", "review", {"all": [{"field": "channel", "eq": "atm"},
                                              {"feature": "hour_cos", "gt": 0.9}]}),
        _rule("velocity-24h", "review", {"feature": "account_count_24h_log", "ge": 3.5}),
        _rule("merchant-burst", "review", {"feature": "merchant_count_1h_log", "ge": 4.5}),
        _rule("device-sharing", "review", {"feature": "device_count_24h_log", "ge": 3.0}),
        _rule("amount-z", "review", {"all": [{"feature": "account_amount_z", "ge": 4},
                                             {"field": "amount", "gt": 300}]}),
        _rule("score-high", "block", {"score": "fraud_probability", "ge": 0.97}),
        _rule("score-anomaly", "review", {"all": [{"score": "anomaly_score", "ge": 3},
                                                  {"score": "fraud_probability", "ge": 0.2}]}),
        _rule("gift-cards", "review", {"all": [{"field": "merchant_category",
                                                "in": ["digital_goods", "money_transfer"]},
                                               {"field": "amount", "gt": 800}]}),
        _rule("currency", "review", {"not": {"field": "currency", "in": ["USD", "EUR", "GBP"]}}),
        _rule("new-account-big", "review", {"all": [{"feature": "account_first_seen", "eq": 1},
                                                    {"field": "amount", "gt": 1500}]}),
        _rule("country-not-home", "review", {"any": [
            {"field": "country", "in": ["KP", "IR"]},
            {"all": [{"feature": "account_new_country", "eq": 1},
                     {"field": "channel", "eq": "online"}, {"field": "amount", "gt": 2500}]}]}),
    ]
    document["rules"] += extra
    return yaml.safe_dump(document)


def prepared(rows: int, seed: int) -> tuple[list, list, np.ndarray, np.ndarray, list[str]]:
    """Generated transactions, their feature sequences, random scores and model decisions."""
    from fraudops.data.generate import GeneratorConfig, generate

    frame = tabular.sort_by_time(generate(GeneratorConfig(rows=rows, seed=seed)))
    state = OnlineFeatureState(build_spec(tabular.passthrough_names(frame)))
    transactions, sequences = [], []
    for tx in tabular.to_transactions(frame):
        _, sequence, _ = state.update(tx)
        transactions.append(tx)
        sequences.append(sequence.copy())
    sequences = np.stack(sequences)  # [N, K, F], as the consumer stacks a batch to score it
    rng = np.random.default_rng(seed)
    probabilities = rng.beta(0.5, 8, len(transactions))
    anomalies = rng.gamma(1.0, 0.5, len(transactions))
    decisions = np.where(probabilities > 0.8, BLOCK,
                         np.where(probabilities > 0.5, REVIEW, APPROVE)).tolist()
    return transactions, sequences, probabilities, anomalies, decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="transactions per batch")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--list-size", type=int, default=10_000,
                        help="entries of the account deny list")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)

    transactions, sequences, probabilities, anomalies, decisions = prepared(args.rows, args.seed)
    compiled = compile_rule_set(parse_rule_set(twenty_rules()))
    accounts = sorted({tx.account_id for tx in transactions})
    deny = frozenset(accounts[::50][:args.list_size]) | {f"x-{i}" for i in range(args.list_size)}
    engine = RuleEngine(compiled, {"deny_accounts": deny, "deny_devices": frozenset({"dev-0"}),
                                   "trusted_merchants": frozenset({"m-1", "m-2"}),
                                   "high_risk_countries": frozenset({"NG", "RU", "BR"})})
    p, a = probabilities.tolist(), anomalies.tolist()
    gc.collect()
    best, outcomes = float("inf"), []
    for _ in range(args.repeat):
        outcomes = []
        started = time.perf_counter()
        for start in range(0, len(transactions), args.batch):
            end = start + args.batch
            outcomes += decide_batch(engine, transactions[start:end],
                                     sequences[start:end, -1, :], p[start:end], a[start:end],
                                     decisions[start:end])
        best = min(best, time.perf_counter() - started)
    hits = Counter(rule for outcome in outcomes for rule in outcome.fired)
    changed = sum(o.decision != d for o, d in zip(outcomes, decisions, strict=True))
    result = {"rules": len(compiled.rules), "transactions": len(transactions),
              "batch": args.batch, "us_per_transaction": round(best / len(transactions) * 1e6, 2),
              "target_us": 10.0, "decisions_changed": changed,
              "rule_hits": dict(sorted(hits.items()))}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
