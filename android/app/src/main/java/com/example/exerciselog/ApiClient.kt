package com.example.exerciselog

import org.json.JSONArray
import org.json.JSONObject
import java.io.IOException
import java.net.HttpURLConnection
import java.net.URL

data class Exercise(val id: String, val name: String)

/** The signed-in anonymous user; whether it is a validation run's test user is decided once, at sign-in. */
data class Session(val userId: String, val token: String, val isTestUser: Boolean, val validationRunId: String?)

/** A failed request, with a message fit for the screen: never the server's raw body. */
class ApiException(val code: Int, message: String) : IOException(message)

/**
 * The backend at BuildConfig.API_BASE_URL (a Gradle property of the production build).
 * Blocking calls: the ViewModel runs them on Dispatchers.IO.
 */
class ApiClient(private val baseUrl: String, private val sessions: SessionStore) {

    /** Signs in anonymously; a validation run's user is created as a test user carrying the run id. */
    fun signIn(launch: LaunchOptions): Session {
        val body = JSONObject()
            .put("isTestUser", launch.isTestUser)
            .put("validationRunId", launch.validationRunId ?: JSONObject.NULL)
        val user = JSONObject(request("POST", "/v1/users/anonymous", body.toString(), null).ifEmpty { "{}" })
        val session = Session(user.getString("userId"), user.getString("token"), launch.isTestUser, launch.validationRunId)
        sessions.save(session)
        return session
    }

    fun listExercises(): List<Exercise> {
        // an empty body is an empty list, not a JSONArray crash
        val items = JSONArray(authorized("GET", "/v1/exercises", null).ifBlank { "[]" })
        return (0 until items.length()).map { i ->
            val item = items.getJSONObject(i)
            Exercise(item.getString("id"), item.getString("name"))
        }
    }

    fun addExercise(name: String): Exercise {
        val item = JSONObject(authorized("POST", "/v1/exercises", JSONObject().put("name", name).toString()))
        return Exercise(item.getString("id"), item.getString("name"))
    }

    fun deleteExercise(id: String) {
        authorized("DELETE", "/v1/exercises/$id", null)
    }

    /** With the stored session; a rejected (expired) token signs in again once, as the same kind of user. */
    private fun authorized(method: String, path: String, body: String?): String {
        val session = sessions.load() ?: throw ApiException(401, "Not signed in")
        return try {
            request(method, path, body, session)
        } catch (e: ApiException) {
            if (e.code != 401) throw e
            sessions.clear()
            val fresh = signIn(LaunchOptions(session.isTestUser, session.validationRunId))
            request(method, path, body, fresh)
        }
    }

    private fun request(method: String, path: String, body: String?, session: Session?): String {
        val connection = URL(baseUrl.trimEnd('/') + path).openConnection() as HttpURLConnection
        try {
            connection.requestMethod = method
            connection.connectTimeout = 15_000
            connection.readTimeout = 15_000
            connection.setRequestProperty("Accept", "application/json")
            if (session != null) {
                connection.setRequestProperty("Authorization", "Bearer ${session.token}")
                // derived from the session, not from whatever intent started this launch
                if (session.isTestUser) {
                    connection.setRequestProperty("X-Test-User", "true")
                    session.validationRunId?.let { connection.setRequestProperty("X-Validation-Run-Id", it) }
                }
            }
            if (body != null) {
                connection.doOutput = true
                connection.setRequestProperty("Content-Type", "application/json")
                connection.outputStream.use { it.write(body.toByteArray()) }
            }
            val code = connection.responseCode
            if (code !in 200..299) {
                connection.errorStream?.close()
                throw ApiException(code, "The server answered $code to $method $path")
            }
            return connection.inputStream?.bufferedReader()?.use { it.readText() } ?: ""
        } finally {
            connection.disconnect()
        }
    }
}

/** The session in the app's private storage: the list survives a restart; `clearState` starts a new user. */
class SessionStore(private val prefs: android.content.SharedPreferences) {
    fun load(): Session? {
        val userId = prefs.getString("userId", null) ?: return null
        val token = prefs.getString("token", null) ?: return null
        return Session(userId, token, prefs.getBoolean("isTestUser", false), prefs.getString("validationRunId", null))
    }

    fun save(session: Session) {
        prefs.edit()
            .putString("userId", session.userId)
            .putString("token", session.token)
            .putBoolean("isTestUser", session.isTestUser)
            .putString("validationRunId", session.validationRunId)
            .apply()
    }

    fun clear() {
        prefs.edit().clear().apply()
    }
}
