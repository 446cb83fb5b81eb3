"""Rules and lists beside the model: a declarative, versioned rule set (YAML), validated on
load with errors that name the rule and field, compiled once into one fast Python function,
and deny/allow lists kept in the store.

    rule_set = load_rule_set("examples/rules.yaml")        # RuleSetError lists every problem
    compiled = compile_rule_set(rule_set, spec.names)
    engine = RuleEngine(compiled, {"deny_accounts": frozenset({"acc-1"})})
    outcome = engine.evaluate(tx, feature_row, p, a, model_decision)
    outcome.decision, outcome.fired, outcome.version

`RuleSource` keeps an engine current from the rule-set file and the store's lists. Precedence
of actions: see `fraudops.rules.compiler`.
"""

from fraudops.rules.compiler import CompiledRule, CompiledRuleSet, compile_rule_set
from fraudops.rules.engine import RuleEngine, RuleOutcome, RuleSource, decide_batch
from fraudops.rules.exceptions import ListEntryError, RulesError, RuleSetError
from fraudops.rules.lists import FIELD_OF_KIND, check_list_name, normalise_entry
from fraudops.rules.loader import load_rule_set, parse_rule_set
from fraudops.rules.schema import Rule, RuleSet
from fraudops.rules.subjects import ListKind

__all__ = [
    "FIELD_OF_KIND",
    "CompiledRule",
    "CompiledRuleSet",
    "ListEntryError",
    "ListKind",
    "Rule",
    "RuleEngine",
    "RuleOutcome",
    "RuleSet",
    "RuleSetError",
    "RuleSource",
    "RulesError",
    "check_list_name",
    "compile_rule_set",
    "decide_batch",
    "load_rule_set",
    "normalise_entry",
    "parse_rule_set",
]
