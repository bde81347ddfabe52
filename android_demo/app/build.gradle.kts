// The Android shell with both inference runtimes. src/runtimes/java holds the StageRunner
// bindings; build_apk.sh (no Gradle, no AARs) leaves that folder out.
plugins {
    id("com.android.application")
}

android {
    namespace = "org.adpc.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "org.adpc.demo"
        minSdk = 23
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }

    sourceSets["main"].java.srcDirs("src/main/java", "src/runtimes/java")
    sourceSets["main"].assets.srcDirs(layout.buildDirectory.dir("adpcAssets"))

    androidResources {
        // Stage files stay uncompressed in the APK (copied to app storage on first start).
        noCompress += listOf("pte", "tflite", "json", "zip", "png")
    }

    packaging {
        jniLibs.useLegacyPackaging = true
    }
}

dependencies {
    implementation(project(":core"))
    implementation("org.pytorch:executorch-android:1.0.1")
    implementation("com.google.ai.edge.litert:litert:1.4.1")
}

// Assets as build_apk.sh packs them: the first 4 frames of the shipped drive for the benchmark
// activity, and with -PadpcBundle=DIR a bundle under assets/bundle.
val stageAssets by tasks.registering(Sync::class) {
    into(layout.buildDirectory.dir("adpcAssets"))
    from(rootProject.file("../edge/samples/drive")) {
        include("frame_000[0-3].png")
        into("frames")
    }
    val bundle = providers.gradleProperty("adpcBundle").orNull
    if (bundle != null) {
        from(bundle) { into("bundle") }
    }
}
tasks.named("preBuild") { dependsOn(stageAssets) }
