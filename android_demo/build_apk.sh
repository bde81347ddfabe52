#!/usr/bin/env bash
# Builds and signs a debug APK of the Android shell + Java core from Debian packages, without
# Gradle (android_demo/README.md, "APK without Gradle"). The APK carries NO inference runtime
# (the ExecuTorch / LiteRT AARs are not in Debian): it shows the camera and says on screen
# that it cannot segment. The Gradle project in this folder builds the one that can.
#
#   android_demo/build_apk.sh [--bundle DIR] [--frames DIR] [--out DIR]
#
# --bundle DIR  put a bundle (manifest.json + stage files) into the APK as uncompressed assets
# --frames DIR  frame_*.png for the benchmark activity (default: edge/samples/drive, first 4)
# --out DIR     build folder (default: android_demo/build/apk); the APK is OUT/adpc-demo-debug.apk
#
# Needs (Debian bookworm + bullseye main, see README): javac, aapt, dalvik-exchange, zipalign,
# apksigner, keytool, libandroid-23-java. Exit code 3 (and one line) when a tool is missing.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="$HERE/build/apk"
BUNDLE=""
FRAMES="$REPO/edge/samples/drive"
while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) BUNDLE="$2"; shift 2 ;;
        --frames) FRAMES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "build_apk.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

ANDROID_JAR=""
for jar in /usr/lib/android-sdk/platforms/android-23/android.jar \
           /usr/share/java/com.android.android-23.jar; do
    if [ -f "$jar" ]; then ANDROID_JAR="$jar"; break; fi
done
missing=()
for tool in javac aapt dalvik-exchange zipalign apksigner keytool; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -n "$ANDROID_JAR" ] || missing+=("android-23.jar (libandroid-23-java)")
if [ ${#missing[@]} -gt 0 ]; then
    echo "build_apk.sh: missing ${missing[*]}: install the Debian packages listed in" \
         "android_demo/README.md (APK without Gradle)" >&2
    exit 3
fi
if [ -n "$BUNDLE" ] && [ ! -f "$BUNDLE/manifest.json" ]; then
    echo "build_apk.sh: $BUNDLE has no manifest.json: pass a folder written by adpc convert" >&2
    exit 2
fi

rm -rf "$OUT"
mkdir -p "$OUT/gen" "$OUT/classes" "$OUT/assets" "$OUT/dex"
APP="$HERE/app/src/main"

# Assets: sample frames for the benchmark activity, the bundle if given.
if [ -d "$FRAMES" ]; then
    mkdir -p "$OUT/assets/frames"
    find "$FRAMES" -maxdepth 1 -name 'frame_*.png' | sort | head -n 4 |
        while read -r f; do cp "$f" "$OUT/assets/frames/"; done
fi
if [ -n "$BUNDLE" ]; then
    mkdir -p "$OUT/assets/bundle"
    cp -R "$BUNDLE"/. "$OUT/assets/bundle/"
fi

# 1. Resources -> R.java, and the resource-only APK. The source manifest has no package
#    attribute (Gradle's namespace sets it); aapt needs it in the file.
sed 's|<manifest |<manifest package="org.adpc.demo" |' "$APP/AndroidManifest.xml" \
    > "$OUT/AndroidManifest.xml"
aapt package -f -m -J "$OUT/gen" -M "$OUT/AndroidManifest.xml" -S "$APP/res" \
    -I "$ANDROID_JAR" --min-sdk-version 23 --target-sdk-version 23 \
    -0 pte -0 tflite -0 zip -0 json -0 png -0 bin \
    -A "$OUT/assets" -F "$OUT/unsigned.apk"

# 2. Java 8 bytecode of the core + shell against the API-23 android.jar (no runtime sources).
find "$HERE/core/src/main/java" "$APP/java" "$OUT/gen" -name '*.java' > "$OUT/sources.txt"
javac -source 8 -target 8 -bootclasspath "$ANDROID_JAR" -encoding UTF-8 -Xlint:-options \
    -d "$OUT/classes" @"$OUT/sources.txt"

# 3. Dex (dx from dalvik-exchange reads Java 8 class files without lambdas).
dalvik-exchange --dex --min-sdk-version=23 --output="$OUT/dex/classes.dex" "$OUT/classes"
(cd "$OUT/dex" && aapt add "$OUT/unsigned.apk" classes.dex >/dev/null)

# 4. Align (4-byte, uncompressed assets page-aligned) and sign with a debug key.
zipalign -f -p 4 "$OUT/unsigned.apk" "$OUT/aligned.apk"
KEYSTORE="${ADPC_KEYSTORE:-$HERE/build/debug.keystore}"
if [ ! -f "$KEYSTORE" ]; then
    keytool -genkeypair -keystore "$KEYSTORE" -storepass android -keypass android \
        -alias androiddebugkey -keyalg RSA -keysize 2048 -validity 10000 \
        -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
fi
apksigner sign --ks "$KEYSTORE" --ks-pass pass:android --key-pass pass:android \
    --ks-key-alias androiddebugkey --out "$OUT/adpc-demo-debug.apk" "$OUT/aligned.apk"
rm -f "$OUT/unsigned.apk" "$OUT/aligned.apk" "$OUT/adpc-demo-debug.apk.idsig"
echo "$OUT/adpc-demo-debug.apk"
