"""The memory stage: the scene archive and recall of past scenes."""
