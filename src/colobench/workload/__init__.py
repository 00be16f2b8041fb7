"""What an instance is asked to do: prompts and how they are grouped. Knows nothing of backends."""
