"""Rules are found in three places: built-in, --rules directories, and `convfix.rules` entry points."""

import sys
import textwrap

from conftest import EXAMPLES

from convfix.rules import discover

RULE_MODULE = textwrap.dedent(
    """
    from convfix.rules import Rule

    def apply(model, finding, context):
        return "never applies"

    RULES = [Rule("{name}", ("unsupported-op",), apply, "a test rule", ops=("{op}",))]
    """
)


def test_entry_point_rules_are_discovered(tmp_path, monkeypatch):
    (tmp_path / "acme_rules.py").write_text(RULE_MODULE.format(name="acme-rule", op="acme::Thing"))
    dist = tmp_path / "acme_rules-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rules\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[convfix.rules]\nacme = acme_rules\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover()
    rule = next(r for r in found.rules if r.name == "acme-rule")
    assert rule.source.startswith("entry point acme")
    assert found.problems == []
    sys.modules.pop("acme_rules", None)


def test_directory_rules_come_first_and_shadow_builtins_by_name(tmp_path):
    (tmp_path / "mine.py").write_text(RULE_MODULE.format(name="if-to-where", op="If"))
    found = discover([tmp_path, EXAMPLES / "user_rules"])
    names = [r.name for r in found.rules]
    assert names.index("user-decompose-aten-sinc") < names.index("decompose-aten-entr")
    assert next(r for r in found.rules if r.name == "if-to-where").source.endswith("mine.py")
    assert any("shadowed" in p for p in found.problems)


def test_a_module_without_rules_list_is_reported(tmp_path):
    (tmp_path / "wrong.py").write_text("RULES = ['not a rule']\n")
    found = discover([tmp_path])
    assert any("wrong.py" in p for p in found.problems)


def test_a_rule_claiming_an_unknown_kind_is_reported(tmp_path):
    (tmp_path / "typo.py").write_text(
        RULE_MODULE.format(name="typo-rule", op="X").replace("unsupported-op", "unsuported-op")
    )
    found = discover([tmp_path])
    assert any("unknown finding kinds ['unsuported-op']" in p for p in found.problems)


def test_a_broken_builtin_module_is_reported_and_the_others_still_load(tmp_path, monkeypatch):
    import convfix.rewrites

    (tmp_path / "zz_broken.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.setattr(convfix.rewrites, "__path__", [*convfix.rewrites.__path__, str(tmp_path)])
    found = discover()
    assert any("zz_broken: RuntimeError: half-written" in p for p in found.problems)
    assert "if-to-where" in [r.name for r in found.rules]
    sys.modules.pop("convfix.rewrites.zz_broken", None)


def test_last_resort_rules_are_tried_after_the_others_that_claim_a_finding():
    from convfix.findings import Finding
    from convfix.rules import Rule, RuleSet

    def apply(model, finding, context):
        return "never applies"

    generic = Rule("generic", ("conversion-error",), apply, "inline", last_resort=True)
    targeted = Rule("targeted", ("conversion-error",), apply, "rewrite", ops=("Range",))
    found = RuleSet([generic, targeted], []).claiming(Finding("conversion-error", "", node="r", op="Range"))
    assert [r.name for r in found] == ["targeted", "generic"]
