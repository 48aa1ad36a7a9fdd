"""A controller that speaks FastChat's controller protocol, with its registry in Redis."""
