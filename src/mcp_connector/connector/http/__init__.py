"""The HTTP face: every request is authenticated, authorized, limited and routed here.

``app`` is the one handler; ``auth`` (front proxy) and ``tokens`` (TokenReview) say who calls,
``authz`` (SubjectAccessReview) what they may do, ``fairshare`` how much at once; ``routing``
parses the path, ``bodies`` reads and decodes the body, ``tls`` serves the certificates and
``health`` the probes.
"""
