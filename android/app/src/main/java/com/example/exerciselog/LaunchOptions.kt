package com.example.exerciselog

import android.content.Intent

/**
 * How the app was launched. Maestro's `launchApp: arguments:` arrive as intent extras; the production
 * validation flows pass `isTestUser: "true"` and `validationRunId`, so the anonymous user this launch
 * creates is tagged as a test user (the backend lets such users expire: no cleanup in production).
 */
data class LaunchOptions(val isTestUser: Boolean, val validationRunId: String?) {
    companion object {
        const val EXTRA_IS_TEST_USER = "isTestUser"
        const val EXTRA_VALIDATION_RUN_ID = "validationRunId"

        fun from(intent: Intent?): LaunchOptions {
            val extras = intent?.extras ?: return LaunchOptions(false, null)
            // Maestro passes strings, booleans or numbers depending on the YAML; accept "true" and true.
            @Suppress("DEPRECATION")
            val testUser = extras.get(EXTRA_IS_TEST_USER)?.toString()?.equals("true", ignoreCase = true) ?: false
            @Suppress("DEPRECATION")
            val runId = extras.get(EXTRA_VALIDATION_RUN_ID)?.toString()?.takeIf { it.isNotBlank() }
            return LaunchOptions(testUser, runId)
        }
    }
}
