"""Rules: what they claim, how they apply, and where they are found.

A rule transforms a model in place inside a transaction the engine owns (it works on a copy; the engine
keeps the copy only if parity holds). `apply` returns None when it changed the model, or a short reason
when it does not apply to this finding, so the report can explain.

Rules are found in the built-in `convfix.rewrites` package, in directories given with `--rules DIR`
(every `*.py` defining `RULES`), and in installed packages through the entry-point group `convfix.rules`
(each entry point a module with `RULES`, or the list itself).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx_ir as ir

from convfix.errors import ConvfixError
from convfix.findings import KINDS, Finding


@dataclass
class RuleContext:
    """What a rule may consult besides the model and its finding."""

    pinned_shapes: Mapping[str, tuple[int | None, ...]] = field(default_factory=dict)
    # What a rule says of how it rewrote (the report keeps it with the step): cleared before each try.
    details: list[str] = field(default_factory=list)


Apply = Callable[[ir.Model, Finding, RuleContext], "str | None"]


@dataclass
class Rule:
    """A named rewrite: the finding kinds and ops it claims, whether it is exact, and its transform.

    `ops` holds op ids ("If", "org.pytorch.aten::special_entr"); empty means any op of the claimed kinds.
    An approximate rule states the tolerance it needs (rtol, atol); the engine checks it against that.
    A `last_resort` rule (a generic rewrite, such as inlining an op's function body) is tried on a
    finding only after the other rules that claim it.
    """

    name: str
    kinds: tuple[str, ...]
    apply: Apply
    description: str
    ops: tuple[str, ...] = ()
    exact: bool = True
    tolerance: tuple[float, float] | None = None
    source: str = "builtin"
    last_resort: bool = False

    def claims(self, finding: Finding) -> bool:
        return finding.kind in self.kinds and (not self.ops or finding.op in self.ops)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kinds": list(self.kinds),
            "ops": list(self.ops),
            "exact": self.exact,
            "tolerance": self.tolerance,
            "source": self.source,
            "last_resort": self.last_resort,
            "description": self.description,
        }


@dataclass
class RuleSet:
    """The rules found, plus what went wrong loading any of them (reported, never fatal)."""

    rules: list[Rule]
    problems: list[str]

    def claiming(self, finding: Finding) -> list[Rule]:
        """The rules that claim the finding, in discovery order, last-resort rules after the others."""
        return sorted((r for r in self.rules if r.claims(finding)), key=lambda r: r.last_resort)


def _rules_of(module: object, origin: str) -> list[Rule]:
    rules = getattr(module, "RULES", module)
    if not isinstance(rules, Sequence) or not all(isinstance(r, Rule) for r in rules):
        raise TypeError(f"{origin}: RULES must be a list of convfix.rules.Rule")
    return list(rules)


def _builtin_rules(problems: list[str]) -> list[Rule]:
    """Like user rules, a built-in module that fails to load is reported and skipped, not fatal."""
    import convfix.rewrites as package

    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found.extend(_rules_of(module, info.name))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"built-in rules {info.name}: {type(exc).__name__}: {exc}")
    return found


def _directory_rules(directory: Path, problems: list[str]) -> list[Rule]:
    if not directory.is_dir():
        raise ConvfixError(f"--rules {directory}: not a directory")
    found = []
    for path in sorted(directory.glob("*.py")):
        module_name = f"convfix_user_rules.{directory.name}.{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            rules = _rules_of(module, str(path))
        except Exception as exc:  # noqa: BLE001 - a broken user module is reported and skipped
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        for rule in rules:
            rule.source = str(path)
        found.extend(rules)
    return found


def _entry_point_rules(problems: list[str]) -> list[Rule]:
    found = []
    for entry in importlib.metadata.entry_points(group="convfix.rules"):
        try:
            rules = _rules_of(entry.load(), entry.value)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"entry point {entry.name}: {type(exc).__name__}: {exc}")
            continue
        for rule in rules:
            rule.source = f"entry point {entry.name} ({entry.value})"
        found.extend(rules)
    return found


def discover(rule_dirs: Iterable[str | Path] = ()) -> RuleSet:
    """User rules come first so that a user can override a built-in for the same finding."""
    problems: list[str] = []
    rules: list[Rule] = []
    for directory in rule_dirs:
        rules.extend(_directory_rules(Path(directory), problems))
    rules.extend(_entry_point_rules(problems))
    rules.extend(_builtin_rules(problems))
    seen: set[str] = set()
    unique = []
    for rule in rules:
        unknown = sorted(set(rule.kinds) - set(KINDS))
        if unknown:  # a typo here would make the rule silently never apply
            problems.append(f"rule {rule.name!r} from {rule.source} claims unknown finding kinds {unknown}")
        if rule.name in seen:
            problems.append(
                f"rule {rule.name!r} from {rule.source} is shadowed by an earlier rule of that name"
            )
            continue
        seen.add(rule.name)
        unique.append(rule)
    return RuleSet(unique, problems)


def from_rewrite_rules(
    name: str,
    kinds: tuple[str, ...],
    ops: tuple[str, ...],
    rewrite_rules: Sequence[object],
    description: str,
    *,
    exact: bool = True,
    tolerance: tuple[float, float] | None = None,
) -> Rule:
    """A Rule backed by onnxscript rewriter rules; it rewrites every match, subgraphs included."""
    from onnxscript.rewriter import pattern

    rule_set = pattern.RewriteRuleSet(list(rewrite_rules))

    def apply(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
        count = rule_set.apply_to_model(model)
        return None if count else "no match for the rule's pattern (dtype unknown or attributes differ)"

    return Rule(name, kinds, apply, description, ops=ops, exact=exact, tolerance=tolerance)


def for_contrib_op(name: str, op_type: str, rewrite_rule: type, description: str) -> Rule:
    """A Rule spelling out one com.microsoft op by an onnxscript class-form rewrite rule."""
    return from_rewrite_rules(
        name,
        ("unsupported-op", "conversion-error", "divergence"),
        (f"com.microsoft::{op_type}",),
        [rewrite_rule().rule()],
        description,
    )
