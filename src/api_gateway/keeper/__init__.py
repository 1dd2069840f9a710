"""The keeper: state shared by the workers of one gateway when no Redis is configured
(``keeper.server``)."""

from typing import Final

# The environment variable that tells a worker where the keeper listens (a Unix socket path).
KEEPER_VARIABLE: Final = "API_GATEWAY_KEEPER"
# A worker's bound on one keeper command: generous, since the keeper shares two cores with the
# workers, so a scheduling delay is not mistaken for its absence (which sends decisions to
# each worker's memory until the keeper answers again).
KEEPER_TIMEOUT_S: Final = 0.25
