package com.example.exerciselog

import androidx.lifecycle.ViewModel
import androidx.lifecycle.viewModelScope
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** What the screen shows: the loading view, the error view, or the loaded list (empty or not). */
sealed interface ScreenState {
    data object Loading : ScreenState
    data class Loaded(val exercises: List<Exercise>) : ScreenState
    data object Failed : ScreenState  // the error view only: no stale list, no empty state
}

/**
 * Signs in (or resumes the stored session) and loads the list; adds and deletes. It outlives the
 * Activity, so a rotation keeps queued adds and deletes and the loaded list.
 */
class ExerciseViewModel(private val api: ApiClient, private val sessions: SessionStore) : ViewModel() {
    private val state = MutableStateFlow<ScreenState>(ScreenState.Loading)
    val screen: StateFlow<ScreenState> = state.asStateFlow()
    private var started = false

    fun start(launch: LaunchOptions) {
        if (started) return
        started = true
        load(launch)
    }

    fun retry(launch: LaunchOptions) = load(launch)

    private fun load(launch: LaunchOptions) {
        state.value = ScreenState.Loading
        viewModelScope.launch {
            state.value = try {
                val exercises = withContext(Dispatchers.IO) {
                    if (sessions.load() == null) api.signIn(launch)
                    api.listExercises()
                }
                ScreenState.Loaded(exercises)
            } catch (e: CancellationException) {
                throw e  // the ViewModel is cleared: not a failure to show
            } catch (e: Exception) {
                ScreenState.Failed
            }
        }
    }

    fun add(name: String) = change { current -> current + withContext(Dispatchers.IO) { api.addExercise(name) } }

    fun delete(exercise: Exercise) = change { current ->
        withContext(Dispatchers.IO) { api.deleteExercise(exercise.id) }
        current - exercise
    }

    private fun change(apply: suspend (List<Exercise>) -> List<Exercise>) {
        val current = (state.value as? ScreenState.Loaded)?.exercises ?: return
        viewModelScope.launch {
            state.value = try {
                ScreenState.Loaded(apply(current))
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                ScreenState.Failed
            }
        }
    }
}
