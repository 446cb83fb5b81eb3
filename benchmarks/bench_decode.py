"""Decoding the consumer's input: CPU microseconds per message to turn a poll's records into
validated `Transaction`s, on generated transactions as the stream simulator produces them
(`model_dump_json`), clean polls and polls with poison (1% unless told):

- one_by_one: what the consumer does (`consumers.messages.parse_transaction` per record);
- batch: the poll's messages joined into one JSON array, one `TypeAdapter(list[Transaction])
  .validate_json` per poll, and the poll decoded one by one again when that fails (so that a
  poison message keeps its exact reason and detail); the results are checked equal;
- model_validate_json_each, type_adapter_each, core_validator_each: the per-call overhead of
  each pydantic entry point (no poison handling).

The batch was tried for issue 19 (lean hot path) and not adopted: on these messages it saved
0-16% per message (2 shared cores at load 2-5), short of the 20% asked for, so it lives here
and not in `consumers`.

    python benchmarks/bench_decode.py --batch 500 --repeat 200 --out decode.json
    python benchmarks/bench_decode.py --smoke       # tiny sizes: checks the script still runs

CPU-bound and single-threaded: on a shared machine report the load average beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import TypeAdapter

from consumers.exceptions import PoisonMessageError
from consumers.messages import Incoming, is_label, parse_transaction
from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.schema import Transaction

#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"batch": 50, "repeat": 3, "poison_every": 10}
TOPIC, LABELS, MAX_BYTES = "transactions", "labels", 1 << 20
#: Poison mixed into the polls with poison: bad JSON, a schema violation, an absurd amount.
POISON = (b'{"transaction_id": "tx-x", ', b'{"transaction_id": "tx-x"}',
          (b'{"transaction_id":"tx-x","account_id":"a","timestamp":"2026-01-01T00:00:00Z",'
           b'"amount":-1}'))


def poll(batch: int, seed: int, poison_every: int = 0) -> list[Incoming]:
    """One poll of `batch` generated transactions (every `poison_every`-th one poison)."""
    frame = generate(GeneratorConfig(rows=max(batch, 1_000), seed=seed)).head(batch)
    values = [tx.model_dump_json().encode() for tx in tabular.to_transactions(frame)]
    if poison_every:
        for n, i in enumerate(range(poison_every - 1, batch, poison_every)):
            values[i] = POISON[n % len(POISON)]
    return [Incoming(TOPIC, 0, i, None, value) for i, value in enumerate(values)]


def one_by_one(records: list[Incoming]) -> list:
    """What the consumer did before `parse_records`: one validation per message."""
    out = []
    for record in records:
        try:
            if is_label(record, LABELS):
                raise AssertionError("only transactions here")
            out.append(parse_transaction(record.value, MAX_BYTES))
        except PoisonMessageError as error:
            out.append(error)
    return out


_MANY = TypeAdapter(list[Transaction])


def together(records: list[Incoming]) -> list:
    """One validation for the poll; one by one again if any message fails.

    The array's items are the messages, never pieces of them: each message starts with "{",
    a separator inside a string is invalid JSON (a raw newline), inside an object it puts "{"
    where a key must be, and inside an array it leaves an array in an item, which no field of
    `Transaction` accepts. So when every item validates and there are as many items as
    messages, item i is message i, parsed as it would be alone.
    """
    values = [record.value for record in records]
    if all(value and len(value) <= MAX_BYTES and value[0] == 0x7B for value in values):
        try:
            items = _MANY.validate_json(b"[" + b",\n".join(values) + b"]")
        except Exception:  # noqa: BLE001 - found again, with its exact reason, one by one
            items = None
        if items is not None and len(items) == len(values):
            return items
    return one_by_one(records)


def adapter_each(records: list[Incoming]) -> list:
    """One `TypeAdapter(Transaction).validate_json` per message (no poison handling)."""
    return [_ONE.validate_json(record.value) for record in records]


def model_each(records: list[Incoming]) -> list:
    """One `Transaction.model_validate_json` per message (no poison handling)."""
    return [Transaction.model_validate_json(record.value) for record in records]


def core_each(records: list[Incoming]) -> list:
    """The model's compiled validator per message (what `model_validate_json` calls)."""
    return [_CORE.validate_json(record.value) for record in records]


_ONE = TypeAdapter(Transaction)
_CORE = Transaction.__pydantic_validator__


def us_per_message(decoders: dict[str, tuple[Callable[[list[Incoming]], list], list[Incoming]]],
                   repeat: int) -> dict[str, dict[str, float]]:
    """Best and median CPU microseconds per message of each decoder over `repeat` rounds; each
    round runs every decoder once, in turn, so that a busy spell on a shared machine weighs
    on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(repeat):
        for name, (decode, records) in decoders.items():
            began = time.process_time_ns()
            decode(records)
            times[name].append((time.process_time_ns() - began) / 1e3 / len(records))
    return {name: {"best": round(min(t), 3), "median": round(sorted(t)[len(t) // 2], 3)}
            for name, t in times.items()}


def outcome(item: object) -> object:
    return (item.reason, item.detail) if isinstance(item, PoisonMessageError) else item


def measure(batch: int, repeat: int, seed: int, poison_every: int) -> dict:
    clean, mixed = poll(batch, seed), poll(batch, seed, poison_every)
    for records in (clean, mixed):  # the figures compare equal work: the same results
        assert ([outcome(i) for i in together(records)]
                == [outcome(i) for i in one_by_one(records)]), "batch and one by one differ"
    figures = us_per_message({
        "one_by_one": (one_by_one, clean), "batch": (together, clean),
        "one_by_one_with_poison": (one_by_one, mixed), "batch_with_poison": (together, mixed),
        "model_validate_json_each": (model_each, clean), "type_adapter_each": (adapter_each, clean),
        "core_validator_each": (core_each, clean),
    }, repeat)
    before, after = figures["one_by_one"]["median"], figures["batch"]["median"]
    return {"benchmark": "decode", "batch": batch, "repeat": repeat,
            "poison_share": round(sum(isinstance(i, PoisonMessageError)
                                      for i in one_by_one(mixed)) / batch, 4),
            "mean_message_bytes": round(sum(len(r.value) for r in clean) / batch, 1),
            "us_per_message": figures, "batch_saves": round(1 - after / before, 3),
            "load_average": list(os.getloadavg()), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500, help="messages per poll")
    parser.add_argument("--repeat", type=int, default=200, help="decodes of each poll")
    parser.add_argument("--poison-every", type=int, default=100,
                        help="every Nth message of the polls with poison is poison")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs "
                             "(overrides --batch, --repeat, --poison-every)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    result = measure(args.batch, args.repeat, args.seed, args.poison_every)
    for name, figure in result["us_per_message"].items():
        print(f"{name:26s} {figure['median']:7.2f} us/message (best {figure['best']:.2f})")
    print(f"decode {args.batch} messages per poll: the batch saves "
          f"{result['batch_saves']:.0%} per message; load average {result['load_average']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
