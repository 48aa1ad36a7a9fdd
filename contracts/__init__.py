"""Wire contracts shared by every mqgate process: pure pydantic data, no I/O."""
