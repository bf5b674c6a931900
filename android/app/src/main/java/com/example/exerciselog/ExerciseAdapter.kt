package com.example.exerciselog

import android.view.LayoutInflater
import android.view.View
import android.view.ViewGroup
import android.widget.Button
import android.widget.TextView
import androidx.recyclerview.widget.RecyclerView

class ExerciseAdapter(private val onDelete: (Exercise) -> Unit) :
    RecyclerView.Adapter<ExerciseAdapter.Row>() {

    private val items = mutableListOf<Exercise>()

    class Row(view: View) : RecyclerView.ViewHolder(view) {
        val name: TextView = view.findViewById(R.id.exercise_row_name)
        val delete: Button = view.findViewById(R.id.exercise_row_delete)
    }

    fun replace(exercises: List<Exercise>) {
        items.clear()
        items.addAll(exercises)
        notifyDataSetChanged()
    }

    fun add(exercise: Exercise) {
        items.add(exercise)
        notifyItemInserted(items.size - 1)
    }

    fun remove(exercise: Exercise) {
        val index = items.indexOf(exercise)
        if (index >= 0) {
            items.removeAt(index)
            notifyItemRemoved(index)
        }
    }

    override fun getItemCount(): Int = items.size

    override fun onCreateViewHolder(parent: ViewGroup, viewType: Int): Row =
        Row(LayoutInflater.from(parent.context).inflate(R.layout.item_exercise, parent, false))

    override fun onBindViewHolder(holder: Row, position: Int) {
        val exercise = items[position]
        holder.name.text = exercise.name
        holder.delete.setOnClickListener { onDelete(exercise) }
    }
}
