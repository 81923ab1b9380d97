"""proxy-router: routes chat completions to upstreams and logs every call."""
