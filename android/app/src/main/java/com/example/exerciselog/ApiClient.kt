package com.example.exerciselog

import org.json.JSONArray
import org.json.JSONObject
import java.io.IOException
import java.net.HttpURLConnection
import java.net.URL

data class Exercise(val id: String, val name: String)

data class AnonymousUser(val userId: String, val token: String)

/**
 * The backend at BuildConfig.API_BASE_URL (a Gradle property of the production build).
 * Blocking calls: run them off the main thread.
 */
class ApiClient(private val baseUrl: String, private val launch: LaunchOptions) {
    private var token: String? = null

    /** Signs in anonymously; a validation run's user is created as a test user carrying the run id. */
    fun signInAnonymously(): AnonymousUser {
        val body = JSONObject()
            .put("isTestUser", launch.isTestUser)
            .put("validationRunId", launch.validationRunId ?: JSONObject.NULL)
        val user = JSONObject(request("POST", "/v1/users/anonymous", body.toString()))
        return AnonymousUser(user.getString("userId"), user.getString("token")).also { token = it.token }
    }

    /** Goes on as the user this device signed in before (the app was restarted, its data kept). */
    fun resume(user: AnonymousUser) {
        token = user.token
    }

    fun listExercises(): List<Exercise> {
        val items = JSONArray(request("GET", "/v1/exercises", null))
        return (0 until items.length()).map { i ->
            val item = items.getJSONObject(i)
            Exercise(item.getString("id"), item.getString("name"))
        }
    }

    fun addExercise(name: String): Exercise {
        val item = JSONObject(request("POST", "/v1/exercises", JSONObject().put("name", name).toString()))
        return Exercise(item.getString("id"), item.getString("name"))
    }

    fun deleteExercise(id: String) {
        request("DELETE", "/v1/exercises/$id", null)
    }

    private fun request(method: String, path: String, body: String?): String {
        val connection = URL(baseUrl.trimEnd('/') + path).openConnection() as HttpURLConnection
        try {
            connection.requestMethod = method
            connection.connectTimeout = 15_000
            connection.readTimeout = 15_000
            connection.setRequestProperty("Accept", "application/json")
            token?.let { connection.setRequestProperty("Authorization", "Bearer $it") }
            if (launch.isTestUser) {
                connection.setRequestProperty("X-Test-User", "true")
                launch.validationRunId?.let { connection.setRequestProperty("X-Validation-Run-Id", it) }
            }
            if (body != null) {
                connection.doOutput = true
                connection.setRequestProperty("Content-Type", "application/json")
                connection.outputStream.use { it.write(body.toByteArray()) }
            }
            val code = connection.responseCode
            val stream = if (code in 200..299) connection.inputStream else connection.errorStream
            val text = stream?.bufferedReader()?.use { it.readText() } ?: ""
            if (code !in 200..299) throw IOException("$method $path: HTTP $code $text")
            return text.ifEmpty { "{}" }
        } finally {
            connection.disconnect()
        }
    }
}
