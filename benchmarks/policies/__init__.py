"""The fleet's policies on real processes (SIMULATED engine): tenant limits and budgets across router replicas,
priority lanes, breakers and fallback with workers killed, and what resume costs on the token path."""
