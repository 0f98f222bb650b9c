import importlib.util
import json

import numpy as np

from vitdeploy.core.errors import EXIT_CODES


COMMANDS = ("models", "env", "export", "check", "quantize", "validate", "bench", "deploy")


def test_help_lists_commands_and_exit_codes(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for cmd in COMMANDS:
        assert cmd in out
    assert "Exit codes" in out


def test_every_command_help_has_an_example_and_a_readme_section(cli):
    from pathlib import Path

    from vitdeploy.cli import app

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    registered = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert set(COMMANDS) <= set(registered)
    for cmd in registered:
        code, out, _ = cli(cmd, "--help")
        assert code == 0
        assert "Example" in out, cmd
        assert f"vitdeploy {cmd}" in readme, f"README has no example of `vitdeploy {cmd}`"


def test_help_prose_wraps_at_the_terminal_width(cli, monkeypatch):
    """At 80 columns a prose line of a command's help ends near the right edge or ends its paragraph
    (typer keeps single line breaks after the first paragraph: hard-wrapped sources came out ragged)."""
    from vitdeploy.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    for cmd in [c.name for c in app.registered_commands]:
        code, out, _ = cli(cmd, "--help")
        lines = [line.rstrip() for line in out.split("Arguments")[0].split("Options")[0].splitlines()]
        for line, after in zip(lines, lines[1:]):
            text = line.strip()
            if text and after.strip() and not line.startswith("  ") and not after.startswith("   "):
                assert len(line) >= 60 or text.endswith(":"), (cmd, line, after)


def test_models_json_lists_every_family_with_matching_params(cli):
    code, out, _ = cli("models", "--json")
    assert code == 0
    rows = json.loads(out)
    families = {r["family"] for r in rows}
    assert families == {"vit", "t2t_vit", "convit", "sret", "ceit"}
    for r in rows:
        assert r["params"] > 0
        assert r["input_size"][0] == 3 and len(r["mean"]) == 3
        if not r["tiny"]:
            assert r["official_params"] is not None, r["name"]
            assert r["params"] == r["official_params"], r["name"]  # the built count: test_models_listing
            assert "params_match_official" not in r  # was params compared with itself: always true
            assert r["paper_top1"] is not None and r["macs_g"] is not None, r["name"]


def test_unknown_model_is_one_line_with_exit_code(cli):
    code, out, err = cli("models", "show", "deit_tinyy")
    assert code == 3
    assert "unknown model 'deit_tinyy'" in err and "deit_tiny_patch16_224" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_env_runs_and_reports_json(cli):
    code, out, _ = cli("env", "--json")
    assert code == 0
    info = json.loads(out)
    # what env reports matches what this interpreter can import
    for module in ("tensorrt", "onnxruntime", "numpy"):
        assert info["packages"][module]["installed"] is (importlib.util.find_spec(module) is not None), module
    assert info["packages"]["numpy"]["version"] == np.__version__


def test_bad_option_value_is_usage_error(cli):
    code, _, err = cli("export", "vit_tiny_test", "--dynamic-batch", "8:1:4")
    assert code == 2
    assert "invalid batch range" in err


def test_exit_code_table_is_documented_in_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in readme, f"exit code {code} missing from README"


def test_error_messages_keep_their_brackets(cli):
    """Messages name extras and files in brackets ("vitdeploy[ort]"); rich markup must not eat them."""
    code, _, err = cli("check", "nonexistent[ort].onnx")
    assert code == 3 and "nonexistent[ort].onnx" in err
