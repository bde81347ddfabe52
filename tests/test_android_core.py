"""The Android demo's plain-Java core against the Python implementation (golden files).

android_demo/tools/golden.py writes inputs and expected outputs from the real Python code
(edge.host, edge.runtime, edge.budget, edge.costmodel, edge.sources, edge.preprocess, edge.viz,
edge.bundle, edge.backends.base, edge.bench) into a temporary folder; the core and its JUnit 5
tests are compiled with `javac --release 8` and run with Debian's JUnit console launcher.
Skips (one line) only when the JDK or Debian's junit5 package is absent.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "android_demo"
CORE_MAIN = DEMO / "core" / "src" / "main" / "java"
CORE_TEST = DEMO / "core" / "src" / "test" / "java"
JUNIT = Path("/usr/share/java")
CONSOLE = JUNIT / "junit-platform-console-standalone.jar"
API_JARS = [JUNIT / n for n in ("junit-jupiter-api.jar", "apiguardian-api.jar", "opentest4j.jar")]
JAVA_CLASSES = ["HostStepTest", "SchedulerTest", "PreprocessTest", "OverlayTest", "ManifestTest",
                "CodecStatsTest", "BenchTest", "CoreUnitTest"]


def _golden_module():
    spec = importlib.util.spec_from_file_location("adpc_android_golden",
                                                  DEMO / "tools" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _need_java() -> None:
    missing = [t for t in ("javac", "java") if shutil.which(t) is None]
    missing += [str(p) for p in [CONSOLE, *API_JARS] if not p.is_file()]
    if missing:
        pytest.skip(f"no JDK / Debian junit5 here ({', '.join(missing)}): "
                    "apt-get install default-jdk-headless junit5 (android_demo/README.md)")


def _javac(out: Path, sources: list[Path], classpath: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["javac", "--release", "8", "-Xlint:all", "-Werror", "-encoding", "UTF-8",
           "-d", str(out)]
    if classpath:
        cmd += ["-cp", ":".join(map(str, classpath))]
    done = subprocess.run(cmd + [str(s) for s in sources], capture_output=True, text=True)
    assert done.returncode == 0, f"javac failed:\n{done.stdout}{done.stderr}"


def run_junit(classes: Path, golden: Path, reports: Path, out: Path | None = None):
    """Runs every JUnit test of the core; returns (returncode, {class: (tests, failed)})."""
    cmd = ["java", f"-Dadpc.golden={golden}"]
    if out is not None:
        cmd.append(f"-Dadpc.out={out}")
    cmd += ["-jar", str(CONSOLE), "-cp", f"{classes}/main:{classes}/test",
            "--select-package", "org.adpc.core", "--reports-dir", str(reports),
            "--details=none", "--disable-banner", "--disable-ansi-colors"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    results: dict[str, list[int]] = {}
    for report in reports.glob("*.xml"):
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("classname", "").rsplit(".", 1)[-1]
            entry = results.setdefault(name, [0, 0])
            entry[0] += 1
            if case.find("failure") is not None or case.find("error") is not None:
                entry[1] += 1
    return done, {k: tuple(v) for k, v in results.items()}


@pytest.fixture(scope="module")
def java_run(tmp_path_factory):
    _need_java()
    tmp = tmp_path_factory.mktemp("android_core")
    golden = tmp / "golden"
    _golden_module().write_golden(golden)
    classes = tmp / "classes"
    _javac(classes / "main", sorted(CORE_MAIN.rglob("*.java")), [])
    _javac(classes / "test", sorted(CORE_TEST.rglob("*.java")), [classes / "main", *API_JARS])
    done, results = run_junit(classes, golden, tmp / "reports", out=tmp / "out")
    return {"tmp": tmp, "golden": golden, "classes": classes, "done": done,
            "results": results}


def test_all_java_tests_pass(java_run):
    done, results = java_run["done"], java_run["results"]
    assert done.returncode == 0, f"JUnit failed:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
    assert sum(n for n, _ in results.values()) >= 24, results


@pytest.mark.parametrize("java_class", JAVA_CLASSES)
def test_java_class_ran_and_passed(java_run, java_class):
    tests, failed = java_run["results"].get(java_class, (0, 0))
    assert tests > 0, f"{java_class} ran no tests"
    log = java_run["done"].stdout[-4000:]
    assert failed == 0, f"{java_class}: {failed} of {tests} failed:\n{log}"


def test_java_bench_json_passes_the_python_schema_check(java_run):
    from edge.bench import check_report

    data = json.loads((java_run["tmp"] / "out" / "benchmark_results.json").read_text())
    assert check_report(data) == []
    assert data["writer"].startswith("adpc-android")


def test_golden_tests_fail_on_a_wrong_expectation(java_run, tmp_path):
    """Each golden comparison is live: corrupt one expected value per area and the matching
    Java test must fail (so a passing run means agreement, not a test that checks nothing)."""
    golden = tmp_path / "golden"
    shutil.copytree(java_run["golden"], golden)
    index = json.loads((golden / "index.json").read_text())
    cases = index["cases"]

    def flip(name: str, offset: int = 0) -> None:
        path = golden / index["arrays"][name]["file"]
        raw = bytearray(path.read_bytes())
        raw[offset] ^= 0x01
        path.write_bytes(bytes(raw))

    flip(cases["host"]["thresholds"][2]["mask"], 4 * 5 + 3)  # one mask value (float32 bits)
    cases["scheduler"][2]["expected"][1]["stop_reason"] += "!"
    flip(cases["overlay"]["cases"][0]["expected"], 7)
    flip(cases["fit"]["cases"][0]["fitted"], 1000)
    flip(cases["yuv"][0]["rgb"], 11)
    cases["bad_manifests"][0]["message"] += "?"
    cases["stats"][3]["p90"] += 1e-9
    cases["bench"]["report"]["exits"][0]["ms"] += 1e-3
    flip(cases["codec"]["q_nchw"], 9)
    (golden / "index.json").write_text(json.dumps(index))
    _, results = run_junit(java_run["classes"], golden, tmp_path / "reports")
    for name in ("HostStepTest", "SchedulerTest", "OverlayTest", "PreprocessTest",
                 "ManifestTest", "CodecStatsTest", "BenchTest"):
        assert results.get(name, (0, 0))[1] > 0, f"{name} did not notice a wrong expectation"


def test_core_is_plain_java_8_without_lambdas():
    """No android.* in the core (it runs here), no lambdas anywhere dx must dex."""
    for path in CORE_MAIN.rglob("*.java"):
        text = path.read_text()
        assert "import android" not in text, path
    for root in (CORE_MAIN, DEMO / "app" / "src"):
        for path in root.rglob("*.java"):
            code = re.sub(r'"(\\.|[^"\\])*"', '""', path.read_text())
            code = re.sub(r"/\*.*?\*/|//[^\n]*", "", code, flags=re.S)
            assert "->" not in code and "::" not in code, f"lambda or method ref in {path}"


def test_yuv_fixed_point_is_the_bt601_full_range_definition():
    """The integer rule the Java core and the golden files share agrees with the floating-point
    JFIF definition to one level (rounding), on every value of Y, U and V corners and at random."""
    golden = _golden_module()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    u = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    v = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    y[0, :4], u[0, :2], v[0, :2] = (0, 255, 0, 255), (0, 255), (255, 0)
    fixed = golden.yuv_to_rgb_reference(y, u, v).astype(int)
    exact = golden.yuv_float_reference(y, u, v).astype(int)
    assert np.abs(fixed - exact).max() <= 1
