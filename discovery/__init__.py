"""Finding workers and models: the controller client, the model catalog, and the caches they
are read through (in-process memo, then Redis or memory). The api and the dispatchers share it."""
