"""Our own Redis client: RESP2 over one pipelined socket per server, and Redis Cluster routing.

``protocol`` encodes commands and parses replies, ``connection`` is one socket, ``client`` one
server (connect, reconnect, scripts) and ``cluster`` a cluster of them. The rate-limit store
(``stores.redis``, ``stores.cluster``), the response cache, the API-key store and the service
registry all speak to Redis through it.
"""
