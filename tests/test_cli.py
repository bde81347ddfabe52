"""The `adpc` command: JSON and table output, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from converters.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_flops_json_reproduces_the_paper(capsys):
    code, out, _ = run(capsys, "flops", "--model", "w48", "--head-channels", "128",
                       "--size", "1024x2048", "--json", "--masked", "0.193,0.384,0.63")
    report = json.loads(out)
    assert code == 0 and report["model"] == "w48" and report["size"] == [1024, 2048]
    assert [e["exit"] for e in report["exits"]] == [1, 2, 3, 4]
    assert [round(e["gflops"], 1) for e in report["exits"]] == [41.9, 105.6, 368.0, 701.3]
    assert round(report["base_gflops"], 1) == 696.2
    assert report["params"] > report["base_params"] == 65_859_379
    assert len(report["adaptive_exits"]) == 4


def test_flops_table_is_readable(capsys):
    code, out, _ = run(capsys, "flops", "--masked", "0.2,0.4,0.6")
    assert code == 0
    assert "GFLOPs (ADP-C)" in out and "base HRNet without exits: 71.6 GFLOPs" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["flops", "--size", "100x200"], "multiples of 32"),
        (["flops", "--size", "big"], "HEIGHTxWIDTH"),
        (["flops", "--masked", "0.2,2"], "fractions in [0, 1]"),
        (["flops", "--exits", "none", "--masked", "0.2"], "early exits"),
    ],
)
def test_user_errors_are_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_help():
    proc = subprocess.run([sys.executable, "-m", "converters.cli", "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "flops" in proc.stdout and "demo" in proc.stdout
