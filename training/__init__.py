"""How the router's trained parts are made: run from a checkout, never installed. The wheel ships what they write
(router/complexity/artifacts/), not the code or the labelled data (corpora/) that made it.

This layer may import router and contracts; nothing installed imports it except `fleet router train`, which says
so when it is missing (pyproject.toml, [tool.importlinter])."""
