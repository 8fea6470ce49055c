"""Model providers. Remote providers are litellm's own; `local/` models are ours (llama.cpp, local_llama.py);
prepare.py checks and registers them before a run."""
