package com.example.exerciselog

import android.os.Bundle
import android.view.View
import android.widget.EditText
import androidx.activity.enableEdgeToEdge
import androidx.activity.viewModels
import androidx.appcompat.app.AlertDialog
import androidx.appcompat.app.AppCompatActivity
import androidx.core.view.ViewCompat
import androidx.core.view.WindowInsetsCompat
import androidx.core.view.updatePadding
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.lifecycleScope
import androidx.lifecycle.repeatOnLifecycle
import androidx.lifecycle.viewmodel.initializer
import androidx.lifecycle.viewmodel.viewModelFactory
import androidx.recyclerview.widget.LinearLayoutManager
import androidx.recyclerview.widget.RecyclerView
import kotlinx.coroutines.launch

/** The exercise list: loading, error, empty and loaded views, each its own; the work lives in the ViewModel. */
class MainActivity : AppCompatActivity() {
    private val model: ExerciseViewModel by viewModels {
        viewModelFactory {
            initializer {
                val sessions = SessionStore(getSharedPreferences("session", MODE_PRIVATE))
                ExerciseViewModel(ApiClient(BuildConfig.API_BASE_URL, sessions), sessions)
            }
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        enableEdgeToEdge()  // targetSdk 35 draws behind the system bars: pad the content by their insets
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val root = findViewById<View>(R.id.root)
        ViewCompat.setOnApplyWindowInsetsListener(root) { view, insets ->
            val bars = insets.getInsets(WindowInsetsCompat.Type.systemBars() or WindowInsetsCompat.Type.displayCutout())
            view.updatePadding(left = bars.left, top = bars.top, right = bars.right, bottom = bars.bottom)
            insets
        }
        val launch = LaunchOptions.from(intent)  // used only when this launch signs in
        val adapter = ExerciseAdapter(model::delete)
        findViewById<RecyclerView>(R.id.exercise_list).apply {
            layoutManager = LinearLayoutManager(this@MainActivity)
            this.adapter = adapter
        }
        findViewById<View>(R.id.add_exercise).setOnClickListener { showAddDialog() }
        findViewById<View>(R.id.retry).setOnClickListener { model.retry(launch) }
        model.start(launch)
        lifecycleScope.launch {
            repeatOnLifecycle(Lifecycle.State.STARTED) {
                model.screen.collect { show(it, adapter) }
            }
        }
    }

    private fun show(state: ScreenState, adapter: ExerciseAdapter) {
        val loaded = state as? ScreenState.Loaded
        findViewById<View>(R.id.loading).visibility = if (state is ScreenState.Loading) View.VISIBLE else View.GONE
        findViewById<View>(R.id.error_state).visibility = if (state is ScreenState.Failed) View.VISIBLE else View.GONE
        findViewById<View>(R.id.retry).visibility = if (state is ScreenState.Failed) View.VISIBLE else View.GONE
        findViewById<View>(R.id.exercise_list).visibility = if (loaded != null) View.VISIBLE else View.GONE
        findViewById<View>(R.id.add_exercise).visibility = if (loaded != null) View.VISIBLE else View.GONE
        // the empty state only once the list really loaded and is empty
        findViewById<View>(R.id.empty_state).visibility =
            if (loaded != null && loaded.exercises.isEmpty()) View.VISIBLE else View.GONE
        adapter.replace(loaded?.exercises ?: emptyList())
    }

    private fun showAddDialog() {
        val form = layoutInflater.inflate(R.layout.dialog_add_exercise, null)
        val name = form.findViewById<EditText>(R.id.exercise_name)
        AlertDialog.Builder(this)
            .setTitle(R.string.new_exercise)
            .setView(form)
            .setPositiveButton(R.string.save) { _, _ ->
                val text = name.text.toString().trim()
                if (text.isNotEmpty()) model.add(text)
            }
            .setNegativeButton(R.string.cancel, null)
            .show()
    }
}
