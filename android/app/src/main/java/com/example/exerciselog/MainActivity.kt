package com.example.exerciselog

import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.view.View
import android.widget.EditText
import android.widget.TextView
import android.widget.Toast
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import androidx.recyclerview.widget.LinearLayoutManager
import androidx.recyclerview.widget.RecyclerView
import java.util.concurrent.Executors

/** The exercise list: sign in anonymously, show the user's exercises, add and delete them. */
class MainActivity : AppCompatActivity() {
    private val background = Executors.newSingleThreadExecutor()
    private val main = Handler(Looper.getMainLooper())
    private lateinit var api: ApiClient
    private lateinit var adapter: ExerciseAdapter
    private lateinit var emptyState: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        api = ApiClient(BuildConfig.API_BASE_URL, LaunchOptions.from(intent))
        emptyState = findViewById(R.id.empty_state)
        adapter = ExerciseAdapter(::delete)
        findViewById<RecyclerView>(R.id.exercise_list).apply {
            layoutManager = LinearLayoutManager(this@MainActivity)
            adapter = this@MainActivity.adapter
        }
        findViewById<View>(R.id.add_exercise).setOnClickListener { showAddDialog() }
        inBackground({ signIn(); api.listExercises() }) { exercises ->
            adapter.replace(exercises)
            updateEmptyState()
        }
    }

    override fun onDestroy() {
        background.shutdownNow()
        super.onDestroy()
    }

    /**
     * The anonymous user is kept in the app's data, so the list survives a restart; Maestro's
     * `clearState` (a fresh install state) starts a new user.
     */
    private fun signIn() {
        val session = getSharedPreferences("session", MODE_PRIVATE)
        val userId = session.getString("userId", null)
        val token = session.getString("token", null)
        if (userId != null && token != null) {
            api.resume(AnonymousUser(userId, token))
            return
        }
        val user = api.signInAnonymously()
        session.edit().putString("userId", user.userId).putString("token", user.token).apply()
    }

    private fun showAddDialog() {
        val form = layoutInflater.inflate(R.layout.dialog_add_exercise, null)
        val name = form.findViewById<EditText>(R.id.exercise_name)
        AlertDialog.Builder(this)
            .setTitle(R.string.new_exercise)
            .setView(form)
            .setPositiveButton(R.string.save) { _, _ ->
                val text = name.text.toString().trim()
                if (text.isNotEmpty()) {
                    inBackground({ api.addExercise(text) }) { exercise ->
                        adapter.add(exercise)
                        updateEmptyState()
                    }
                }
            }
            .setNegativeButton(R.string.cancel, null)
            .show()
    }

    private fun delete(exercise: Exercise) {
        inBackground({ api.deleteExercise(exercise.id) }) {
            adapter.remove(exercise)
            updateEmptyState()
        }
    }

    private fun updateEmptyState() {
        emptyState.visibility = if (adapter.itemCount == 0) View.VISIBLE else View.GONE
    }

    private fun <T> inBackground(work: () -> T, done: (T) -> Unit) {
        background.execute {
            val result = runCatching(work)
            main.post {
                result.onSuccess(done).onFailure { error ->
                    Toast.makeText(this, getString(R.string.network_error, error.message), Toast.LENGTH_LONG).show()
                }
            }
        }
    }
}
