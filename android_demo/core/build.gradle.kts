// The plain-Java core: no android.* imports, Java 8, no lambdas (so Debian's dx can dex it).
// Its tests compare with golden files written by ../tools/golden.py from the Python code:
//   python android_demo/tools/golden.py android_demo/build/golden && gradle :core:test
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

dependencies {
    testImplementation("org.junit.jupiter:junit-jupiter:5.10.2")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher:1.10.2")
}

tasks.test {
    useJUnitPlatform()
    systemProperty("adpc.golden", rootProject.file("build/golden").absolutePath)
}
