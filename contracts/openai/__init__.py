"""OpenAI request, response and chunk models, one module per endpoint."""
