// Top-level build file: the plugins the modules use, resolved once.
plugins {
    id("com.android.application") version "8.6.1" apply false  // targetSdk 35 needs AGP 8.6+, which needs Gradle 8.7+
    id("org.jetbrains.kotlin.android") version "1.9.24" apply false
}
