"""gateway: projects, API keys, provider settings and the public REST surface."""
