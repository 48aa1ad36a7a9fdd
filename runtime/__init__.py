"""What every mqgate process runs on: logging set-up, uvicorn servers started in the
background, the side port's health and metrics app."""
