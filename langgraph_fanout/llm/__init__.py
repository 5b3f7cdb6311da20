"""The LLM stack: models by ``provider:model`` name, the one call every LLM node makes, retries."""
