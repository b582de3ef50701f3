"""Real services the program's tests run against on 127.0.0.1: PostgreSQL and the LiteLLM proxy."""
