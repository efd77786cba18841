"""Keys, trust stores, TLS contexts and PIN pairing for link-local streams (issue 5).

Identity is always the SHA-256 fingerprint of a peer's TLS certificate — never a stream's
`from`, never an mDNS name. See docs/protocol.md, "Security".
"""
