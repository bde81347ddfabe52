// Versions are pinned here and in app/build.gradle.kts; change them together (README.md).
plugins {
    id("com.android.application") version "8.5.2" apply false
}
