"""Real parts the root tests start on 127.0.0.1 (PostgreSQL, the LiteLLM proxy) and fakes of what cannot
run here."""
