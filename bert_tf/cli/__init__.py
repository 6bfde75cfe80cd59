"""The command-line side shared by the scripts and tools: flags and the one-line user errors."""
