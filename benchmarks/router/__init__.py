"""The router: the `auto` classifier's quality and hot-path cost (complexity.py), and one router's forwarding
throughput against a bare relay (throughput.py)."""
