plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// Production settings arrive as Gradle project properties (-PAPI_BASE_URL=... from `invoke build-apk`).
val apiBaseUrl: String = providers.gradleProperty("API_BASE_URL").getOrElse("https://api.example.com")

// Release signing from CI secrets: `invoke build-apk` decodes ANDROID_KEYSTORE_BASE64 to a temporary
// file and passes these as ORG_GRADLE_PROJECT_* environment variables, never on the command line.
val releaseStoreFile: String? = providers.gradleProperty("RELEASE_STORE_FILE").orNull
val releaseStorePassword: String? = providers.gradleProperty("RELEASE_STORE_PASSWORD").orNull
val releaseKeyAlias: String? = providers.gradleProperty("RELEASE_KEY_ALIAS").orNull
val releaseKeyPassword: String? = providers.gradleProperty("RELEASE_KEY_PASSWORD").orNull

android {
    namespace = "com.example.exerciselog"
    compileSdk = 34

    defaultConfig {
        applicationId = "com.example.exerciselog"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "1.0.0"
        buildConfigField("String", "API_BASE_URL", "\"$apiBaseUrl\"")
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
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.recyclerview:recyclerview:1.3.2")
    implementation("com.google.android.material:material:1.12.0")
}
