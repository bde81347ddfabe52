"""android_demo/build_apk.sh builds a signed debug APK from Debian packages, and it is what it
claims: the shell + core, API 23, signed, aligned, stage files stored uncompressed, and no
inference runtime inside (so the app must say it cannot segment).

Skips (one line) only when the Debian Android tools are absent (android_demo/README.md lists
the packages and the bullseye sources list they need).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "android_demo" / "build_apk.sh"
TOOLS = ("javac", "aapt", "dalvik-exchange", "zipalign", "apksigner", "keytool", "dexdump")
ANDROID_JARS = (Path("/usr/lib/android-sdk/platforms/android-23/android.jar"),
                Path("/usr/share/java/com.android.android-23.jar"))


def _need_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not any(p.is_file() for p in ANDROID_JARS):
        missing.append("android-23.jar")
    if missing:
        pytest.skip(f"Debian Android tools absent ({', '.join(missing)}): see "
                    "android_demo/README.md, 'APK without Gradle'")


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def apk(tmp_path_factory) -> Path:
    _need_tools()
    from edge.bundle import BundleFile, write_bundle

    tmp = tmp_path_factory.mktemp("apk")
    stage = tmp / "stages.pte"
    stage.write_bytes(bytes(range(256)) * 64)
    from converters.stages import build_manifest
    from model_zoo.adpc import ADPCConfig

    bundle = write_bundle(tmp / "bundle", build_manifest(ADPCConfig(), 256, 512),
                          {"executorch/stages_fp32.pte": BundleFile(
                              stage, "executorch", "fp32",
                              ("stage1", "stage2", "stage3", "stage4"))})
    env = {**os.environ, "ADPC_KEYSTORE": str(tmp / "debug.keystore")}
    done = subprocess.run(["bash", str(SCRIPT), "--bundle", str(bundle), "--out",
                           str(tmp / "out")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, f"build_apk.sh failed:\n{done.stdout}{done.stderr}"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file()
    return path


def test_badging_is_the_demo_app_on_api_23(apk):
    badging = _run("aapt", "dump", "badging", str(apk))
    assert "package: name='org.adpc.demo'" in badging
    assert "sdkVersion:'23'" in badging
    assert "launchable-activity: name='org.adpc.demo.MainActivity'" in badging
    assert "uses-permission: name='android.permission.CAMERA'" in badging


def test_signed_and_aligned(apk):
    assert "Verifies" in _run("apksigner", "verify", "--verbose", str(apk))
    _run("zipalign", "-c", "-p", "4", str(apk))


def test_dex_has_the_core_and_shell_and_no_runtime(apk):
    dump = _run("dexdump", str(apk))
    classes = {line.split("'")[1] for line in dump.splitlines() if "Class descriptor" in line}
    for needed in ("Lorg/adpc/core/AnytimeScheduler;", "Lorg/adpc/core/HostStep;",
                   "Lorg/adpc/core/ManifestReader;", "Lorg/adpc/demo/MainActivity;",
                   "Lorg/adpc/demo/BenchmarkActivity;", "Lorg/adpc/demo/CameraSource;"):
        assert needed in classes, needed
    runtime = [c for c in classes if c.startswith(("Lorg/adpc/demo/runtime/", "Lorg/pytorch/",
                                                   "Lorg/tensorflow/"))]
    assert runtime == [], f"this APK must carry no inference runtime, found {runtime}"


def test_the_app_says_it_cannot_segment(apk):
    strings = _run("aapt", "dump", "--values", "resources", str(apk))
    assert "carries no inference runtime" in strings
    assert "cannot segment" in strings


def test_bundle_and_frames_are_stored_uncompressed(apk):
    with zipfile.ZipFile(apk) as z:
        infos = {i.filename: i for i in z.infolist()}
    assert "classes.dex" in infos
    assets = [n for n in infos if n.startswith("assets/")]
    assert "assets/bundle/manifest.json" in assets
    assert "assets/bundle/executorch/stages_fp32.pte" in assets
    assert any(n.startswith("assets/frames/frame_") for n in assets)
    for name in assets:
        assert infos[name].compress_type == zipfile.ZIP_STORED, name
