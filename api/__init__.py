"""The HTTP front: OpenAI routes, auth, validation, SSE, publishing jobs and awaiting replies."""
