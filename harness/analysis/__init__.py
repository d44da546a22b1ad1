"""Analysis of stored scores: pure statistics (`stats`), run summaries, comparisons, checks and routing."""
