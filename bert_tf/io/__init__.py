"""Files local and on Cloud Storage: atomic writes, gs:// checks, the run lock and directory."""
