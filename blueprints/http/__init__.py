"""What every HTTP door shares: security headers, the input guard, error pages, query
arguments, forms, and the client's address behind trusted proxies."""
