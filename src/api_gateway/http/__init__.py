"""The data plane: an HTTP/1.1 server and a pooled upstream client on uvloop and httptools.

Nothing here knows about routes, tokens or tenants; it parses, frames, streams and enforces the
protocol's own limits.
"""
