// The Android demo as a standard Gradle build (workstation with the Android SDK; README.md).
// :core is the plain-Java core tested on the host; :app is the shell plus the runtimes.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()        // com.google.ai.edge.litert
        mavenCentral()  // org.pytorch:executorch-android, JUnit
    }
}
rootProject.name = "adpc-android"
include(":core", ":app")
