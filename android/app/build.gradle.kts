plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// Production settings arrive as Gradle project properties (-PAPI_BASE_URL=... from `invoke build-apk`).
val apiBaseUrl: String = providers.gradleProperty("API_BASE_URL").getOrElse("")
// Placeholders that must never ship: a release build with one of them (or no URL) refuses to build.
val placeholderApiBaseUrls = setOf("", "https://api.example.com", "http://api.example.com")
// The Play Store needs a growing versionCode: CI passes its run number (ORG_GRADLE_PROJECT_VERSION_CODE).
val ciVersionCode: Int = providers.gradleProperty("VERSION_CODE").map { it.toInt() }.getOrElse(1)

// Release signing from CI secrets: `invoke build-apk` decodes ANDROID_KEYSTORE_BASE64 to a temporary
// file and passes these as ORG_GRADLE_PROJECT_* environment variables, never on the command line.
val releaseStoreFile: String? = providers.gradleProperty("RELEASE_STORE_FILE").orNull
val releaseStorePassword: String? = providers.gradleProperty("RELEASE_STORE_PASSWORD").orNull
val releaseKeyAlias: String? = providers.gradleProperty("RELEASE_KEY_ALIAS").orNull
val releaseKeyPassword: String? = providers.gradleProperty("RELEASE_KEY_PASSWORD").orNull

android {
    namespace = "com.example.exerciselog"
    compileSdk = 35

    defaultConfig {
        applicationId = "com.example.exerciselog"
        minSdk = 24
        targetSdk = 35  // Google Play's requirement; edge-to-edge is enforced from 35 (MainActivity applies insets)
        versionCode = ciVersionCode
        versionName = "1.0.0"
        buildConfigField("String", "API_BASE_URL", "\"${apiBaseUrl.ifEmpty { "https://api.example.com" }}\"")
    }

    signingConfigs {
        create("release") {
            if (releaseStoreFile != null) {
                storeFile = file(releaseStoreFile)
                storePassword = releaseStorePassword
                keyAlias = releaseKeyAlias
                keyPassword = releaseKeyPassword
            }
        }
    }

    buildTypes {
        getByName("release") {
            isMinifyEnabled = false
            // Without the production keystore (a local build) the release is signed with the debug key,
            // so it still installs; `invoke build-apk` warns when that happens.
            signingConfig = if (releaseStoreFile != null) signingConfigs.getByName("release") else signingConfigs.getByName("debug")
        }
        getByName("debug") {
            applicationIdSuffix = ".debug"
        }
    }

    buildFeatures {
        buildConfig = true
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    implementation("androidx.core:core-ktx:1.13.1")
    implementation("androidx.activity:activity-ktx:1.9.3")  // enableEdgeToEdge, viewModels()
    implementation("androidx.lifecycle:lifecycle-viewmodel-ktx:2.8.7")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.7")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.8.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.recyclerview:recyclerview:1.3.2")
    implementation("com.google.android.material:material:1.12.0")
}

// A release build must talk to a real server: refuse the placeholder (or a missing) API_BASE_URL before
// anything is compiled, naming the setting to fix.
androidComponents {
    onVariants(selector().withBuildType("release")) { variant ->
        if (apiBaseUrl.trim().trimEnd('/') in placeholderApiBaseUrls) {
            throw GradleException(
                "API_BASE_URL is '${apiBaseUrl}' for the ${variant.name} build: set the production server's URL " +
                    "(invoke.yaml build.properties.API_BASE_URL, or -PAPI_BASE_URL=https://...)"
            )
        }
    }
}
